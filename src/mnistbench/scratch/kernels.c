/* One-loop optimizer kernels, the fast path of scratch/optim.py; the softmax cross-entropy's own passes, the fast
 * path of scratch/losses.py; and the layers' bias and ReLU passes, the fast path of scratch/layers.py: each held to
 * its NumPy reference bit for bit.
 *
 * Built at install as the extension mnistbench.scratch._kernels (setup.py); scratch/fused.py loads it.
 *
 * Each kernel walks the parameters once, doing per element exactly the operations of the reference's NumPy
 * passes, in their order, each rounded to the array's type: every Python-float scalar is cast to that type
 * first, as NumPy 2 casts a Python float meeting a float32 array (NEP 50). The build keeps FMA contraction off
 * and fast-math out (setup.py), so the compiler neither fuses a multiply and an add nor reorders anything; sqrt
 * and division are IEEE operations, correctly rounded in SIMD and scalar code alike. Hence the same bits as the
 * reference, in float32 and float64 (tests/test_scratch_fused.py).
 *
 * Arrays: C-contiguous, one float type (float32 or float64), all the same number of elements, not overlapping
 * (a flat view of one parameter tensor, or the network's whole parameter vector); updated in place. A state
 * array the settings do not use may be None.
 *
 * The boolean settings are compile-time constants of the loops: each Python-facing function switches once on
 * them to a loop specialized for that combination (the inline body with constant flags), which the compiler
 * vectorizes without branches. On x86-64 with glibc every dispatching function is cloned for AVX-512, AVX2 and
 * the baseline (target_clones), and the loader picks the clone the CPU runs, once, when the module is loaded.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#ifndef KERNELS_SOURCE_SHA256
#define KERNELS_SOURCE_SHA256 "unknown"
#endif

#if defined(__GNUC__) && defined(__x86_64__) && defined(__GLIBC__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define CLONED __attribute__((target_clones("avx512f", "avx2", "default")))
#define CLONE_ISAS 1
#endif
#endif
#ifndef CLONED
#define CLONED
#endif

#define INLINE static inline __attribute__((always_inline))

/* --- the loops, for one float type T ------------------------------------------------------------------------- */

#define DEFINE_LOOPS(T, SQRT)                                                                                      \
    INLINE void sgd_loop_##T(T *restrict param, const T *restrict grad, T *restrict velocity, Py_ssize_t n,        \
                             T lr, T momentum, T weight_decay, bool decay, bool use_momentum, bool nesterov,       \
                             bool first_step) {                                                                    \
        for (Py_ssize_t i = 0; i < n; i++) {                                                                       \
            T direction = decay ? param[i] * weight_decay + grad[i] : grad[i];                                     \
            if (use_momentum) {                                                                                    \
                T buf = first_step ? direction : velocity[i] * momentum + direction;                               \
                velocity[i] = buf;                                                                                 \
                direction = nesterov ? buf * momentum + direction : buf;                                           \
            }                                                                                                      \
            param[i] = param[i] - direction * lr;                                                                  \
        }                                                                                                          \
    }                                                                                                              \
                                                                                                                   \
    INLINE void adam_loop_##T(T *restrict param, const T *restrict grad, T *restrict first, T *restrict second,    \
                              Py_ssize_t n, T beta1, T beta2, T denominator_shift, T step_scale, T weight_decay,   \
                              T shrink, bool decay, bool decoupled) {                                              \
        for (Py_ssize_t i = 0; i < n; i++) {                                                                       \
            if (decoupled)                                                                                         \
                param[i] = param[i] * shrink;                                                                      \
            T g = decay ? param[i] * weight_decay + grad[i] : grad[i];                                             \
            T m = first[i] * beta1 + g;                                                                            \
            first[i] = m;                                                                                          \
            T v = second[i] * beta2 + g * g;                                                                       \
            second[i] = v;                                                                                         \
            param[i] = param[i] - m / (SQRT(v) + denominator_shift) * step_scale;                                  \
        }                                                                                                          \
    }                                                                                                              \
                                                                                                                   \
    INLINE void rmsprop_loop_##T(T *restrict param, const T *restrict grad, T *restrict square,                    \
                                 T *restrict average, T *restrict velocity, Py_ssize_t n, T lr, T alpha, T rest,   \
                                 T eps, T momentum, T weight_decay, bool decay, bool use_momentum,                 \
                                 bool centered) {                                                                  \
        for (Py_ssize_t i = 0; i < n; i++) {                                                                       \
            T g = decay ? param[i] * weight_decay + grad[i] : grad[i];                                             \
            T s = square[i] * alpha + g * rest * g;                                                                \
            square[i] = s;                                                                                         \
            T denominator;                                                                                         \
            if (centered) {                                                                                        \
                T a = average[i] + (g - average[i]) * rest;                                                        \
                average[i] = a;                                                                                    \
                denominator = SQRT(s - a * a) + eps;                                                               \
            } else {                                                                                               \
                denominator = SQRT(s) + eps;                                                                       \
            }                                                                                                      \
            T update = g / denominator;                                                                            \
            if (use_momentum) {                                                                                    \
                update = velocity[i] * momentum + update;                                                          \
                velocity[i] = update;                                                                              \
            }                                                                                                      \
            param[i] = param[i] - update * lr;                                                                     \
        }                                                                                                          \
    }                                                                                                              \
                                                                                                                   \
    INLINE void adagrad_loop_##T(T *restrict param, const T *restrict grad, T *restrict squared_sum,               \
                                 Py_ssize_t n, T lr, T eps, T weight_decay, bool decay) {                          \
        for (Py_ssize_t i = 0; i < n; i++) {                                                                       \
            T g = decay ? param[i] * weight_decay + grad[i] : grad[i];                                             \
            T s = squared_sum[i] + g * g;                                                                          \
            squared_sum[i] = s;                                                                                    \
            param[i] = param[i] - g / (SQRT(s) + eps) * lr;                                                        \
        }                                                                                                          \
    }

DEFINE_LOOPS(float, sqrtf)
DEFINE_LOOPS(double, sqrt)

/* --- one specialized loop per combination of settings (bit k of `flags` is the k-th boolean) ----------------- */

#define B(F, k) ((bool)(((F) >> (k)) & 1u))
#define CASES2(CALL) CALL(0) CALL(1) CALL(2) CALL(3)
#define CASES3(CALL) CASES2(CALL) CALL(4) CALL(5) CALL(6) CALL(7)
#define CASES4(CALL) CASES3(CALL) CALL(8) CALL(9) CALL(10) CALL(11) CALL(12) CALL(13) CALL(14) CALL(15)

#define DEFINE_DISPATCH(T)                                                                                         \
    CLONED static void sgd_##T(T *param, const T *grad, T *velocity, Py_ssize_t n, T lr, T momentum,               \
                               T weight_decay, unsigned flags) {                                                   \
        switch (flags) {                                                                                           \
        /* flags: decay, use_momentum, nesterov, first_step */                                                     \
            CASES4(SGD_CASE_##T)                                                                                   \
        }                                                                                                          \
    }                                                                                                              \
    CLONED static void adam_##T(T *param, const T *grad, T *first, T *second, Py_ssize_t n, T beta1, T beta2,      \
                                T denominator_shift, T step_scale, T weight_decay, T shrink, unsigned flags) {     \
        switch (flags) { /* flags: decay, decoupled */                                                             \
            CASES2(ADAM_CASE_##T)                                                                                  \
        }                                                                                                          \
    }                                                                                                              \
    CLONED static void rmsprop_##T(T *param, const T *grad, T *square, T *average, T *velocity, Py_ssize_t n,      \
                                   T lr, T alpha, T rest, T eps, T momentum, T weight_decay, unsigned flags) {     \
        switch (flags) { /* flags: decay, use_momentum, centered */                                                \
            CASES3(RMSPROP_CASE_##T)                                                                               \
        }                                                                                                          \
    }                                                                                                              \
    CLONED static void adagrad_##T(T *param, const T *grad, T *squared_sum, Py_ssize_t n, T lr, T eps,             \
                                   T weight_decay, unsigned flags) {                                               \
        switch (flags) { /* flags: decay */                                                                        \
        case 0:                                                                                                    \
            adagrad_loop_##T(param, grad, squared_sum, n, lr, eps, weight_decay, false);                           \
            break;                                                                                                 \
        case 1:                                                                                                    \
            adagrad_loop_##T(param, grad, squared_sum, n, lr, eps, weight_decay, true);                            \
            break;                                                                                                 \
        }                                                                                                          \
    }

#define SGD_CASE(T, F)                                                                                             \
    case F: {                                                                                                      \
        sgd_loop_##T(param, grad, velocity, n, lr, momentum, weight_decay, B(F, 0), B(F, 1), B(F, 2), B(F, 3));    \
        break;                                                                                                     \
    }
#define ADAM_CASE(T, F)                                                                                            \
    case F: {                                                                                                      \
        adam_loop_##T(param, grad, first, second, n, beta1, beta2, denominator_shift, step_scale, weight_decay,    \
                      shrink, B(F, 0), B(F, 1));                                                                   \
        break;                                                                                                     \
    }
#define RMSPROP_CASE(T, F)                                                                                         \
    case F: {                                                                                                      \
        rmsprop_loop_##T(param, grad, square, average, velocity, n, lr, alpha, rest, eps, momentum,                \
                         weight_decay, B(F, 0), B(F, 1), B(F, 2));                                                 \
        break;                                                                                                     \
    }
#define SGD_CASE_float(F) SGD_CASE(float, F)
#define SGD_CASE_double(F) SGD_CASE(double, F)
#define ADAM_CASE_float(F) ADAM_CASE(float, F)
#define ADAM_CASE_double(F) ADAM_CASE(double, F)
#define RMSPROP_CASE_float(F) RMSPROP_CASE(float, F)
#define RMSPROP_CASE_double(F) RMSPROP_CASE(double, F)

DEFINE_DISPATCH(float)
DEFINE_DISPATCH(double)

/* --- arguments ----------------------------------------------------------------------------------------------- */

#define MAX_ARRAYS 5
#define ALWAYS -1

/* What a Python-facing function takes: args = arrays, then scalars (as doubles), then booleans (packed into
 * `flags`, bit k the k-th). Array k is written where bit k of `written` is set, and used only where flag bit
 * `used_if[k]` is set (ALWAYS: every call); array 0 is param, which sets the type and the element count. */
typedef struct {
    const char *function;
    int n_arrays, n_scalars, n_flags;
    const char *names[MAX_ARRAYS];
    unsigned written;
    int used_if[MAX_ARRAYS];
} Signature;

/* One call's arguments, read per its Signature. */
typedef struct {
    Py_buffer views[MAX_ARRAYS];
    bool held[MAX_ARRAYS];
    int count;
    char type; /* 'f' (float32) or 'd' (float64) */
    Py_ssize_t n;
    double scalars[6];
    unsigned flags;
} Call;

static void release(Call *call) {
    for (int k = 0; k < call->count; k++)
        if (call->held[k])
            PyBuffer_Release(&call->views[k]);
}

static void *data(const Call *call, int k) { return call->held[k] ? call->views[k].buf : NULL; }

/* The one-character struct format of a buffer ('f', 'd', 'q', ...), or '?' for any other. */
static char format_of(const Py_buffer *view) {
    return (view->format && strlen(view->format) == 1) ? view->format[0] : '?';
}

static bool is_float(const Py_buffer *view) {
    char format = format_of(view);
    return (format == 'f' && view->itemsize == 4) || (format == 'd' && view->itemsize == 8);
}

static bool overlaps(const Py_buffer *a, const Py_buffer *b) {
    const char *x = a->buf, *y = b->buf;
    return a->len && b->len && x < y + b->len && y < x + a->len;
}

/* Array k of the call from `object`; 0 on success, -1 with a Python error set. */
static int acquire(Call *call, const Signature *sig, int k, PyObject *object) {
    const char *name = sig->names[k];
    call->held[k] = false;
    call->count = k + 1;
    if (sig->used_if[k] != ALWAYS && !((call->flags >> sig->used_if[k]) & 1u))
        return 0; /* unused under these settings: any object, None included */
    if (object == Py_None) {
        PyErr_Format(PyExc_TypeError, "%s: an array is needed, not None", name);
        return -1;
    }
    int request = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (((sig->written >> k) & 1u) ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(object, &call->views[k], request) < 0)
        return -1;
    call->held[k] = true;
    Py_buffer *view = &call->views[k];
    char type = format_of(view);
    if (!is_float(view)) {
        PyErr_Format(PyExc_TypeError, "%s: float32 or float64 elements are needed, not format '%s'", name,
                     view->format ? view->format : "B");
        return -1;
    }
    Py_ssize_t n = view->len / view->itemsize;
    if (k == 0) {
        call->type = type;
        call->n = n;
        return 0;
    }
    if (type != call->type || n != call->n) {
        PyErr_Format(PyExc_ValueError, "%s: %zd elements of type '%c' where param has %zd of type '%c'", name, n,
                     type, call->n, call->type);
        return -1;
    }
    for (int other = 0; other < k; other++) {
        if (call->held[other] && overlaps(view, &call->views[other])) {
            PyErr_Format(PyExc_ValueError, "%s overlaps %s", name, sig->names[other]);
            return -1;
        }
    }
    return 0;
}

/* Read args per `sig` into *call; 0 on success, -1 with a Python error set and nothing held. */
static int parse(PyObject *const *args, Py_ssize_t nargs, const Signature *sig, Call *call) {
    Py_ssize_t expected = sig->n_arrays + sig->n_scalars + sig->n_flags;
    call->count = 0;
    call->flags = 0;
    if (nargs != expected) {
        PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments (%zd given)", sig->function, expected, nargs);
        return -1;
    }
    for (int k = 0; k < sig->n_scalars; k++) {
        call->scalars[k] = PyFloat_AsDouble(args[sig->n_arrays + k]);
        if (call->scalars[k] == -1.0 && PyErr_Occurred())
            return -1;
    }
    for (int k = 0; k < sig->n_flags; k++) {
        int truth = PyObject_IsTrue(args[sig->n_arrays + sig->n_scalars + k]);
        if (truth < 0)
            return -1;
        call->flags |= (unsigned)truth << k;
    }
    for (int k = 0; k < sig->n_arrays; k++) {
        if (acquire(call, sig, k, args[k]) < 0) {
            release(call);
            return -1;
        }
    }
    return 0;
}

/* --- the Python functions: parse, run the loop of the arrays' type without the GIL, release ------------------ */

#define ARRAY(T, k) ((T *)data(&call, k))
#define SCALAR(T, k) ((T)call.scalars[k])

static const Signature SGD = {"sgd", 3, 3, 4, {"param", "grad", "velocity"}, 0x5u, {ALWAYS, ALWAYS, 1}};
PyDoc_STRVAR(sgd_doc, "sgd(param, grad, velocity, lr, momentum, weight_decay, decay, use_momentum, nesterov, "
                      "first_step)\n\nscratch/optim.py SGD; velocity may be None without momentum.");
#define SGD_CALL(T)                                                                                                \
    sgd_##T(ARRAY(T, 0), ARRAY(T, 1), ARRAY(T, 2), call.n, SCALAR(T, 0), SCALAR(T, 1), SCALAR(T, 2), call.flags)

static const Signature ADAM = {"adam", 4, 6, 2, {"param", "grad", "first", "second"}, 0xDu,
                               {ALWAYS, ALWAYS, ALWAYS, ALWAYS}};
PyDoc_STRVAR(adam_doc, "adam(param, grad, first, second, beta1, beta2, denominator_shift, step_scale, weight_decay, "
                       "shrink, decay, decoupled)\n\nscratch/optim.py Adam / AdamW on the scaled moments; decoupled "
                       "is AdamW's param *= shrink first.");
#define ADAM_CALL(T)                                                                                               \
    adam_##T(ARRAY(T, 0), ARRAY(T, 1), ARRAY(T, 2), ARRAY(T, 3), call.n, SCALAR(T, 0), SCALAR(T, 1), SCALAR(T, 2), \
             SCALAR(T, 3), SCALAR(T, 4), SCALAR(T, 5), call.flags)

static const Signature RMSPROP = {"rmsprop", 5, 5, 3, {"param", "grad", "square", "average", "velocity"}, 0x1Du,
                                  {ALWAYS, ALWAYS, ALWAYS, 2, 1}};
PyDoc_STRVAR(rmsprop_doc, "rmsprop(param, grad, square, average, velocity, lr, alpha, eps, momentum, weight_decay, "
                          "decay, use_momentum, centered)\n\nscratch/optim.py RMSprop; average may be None unless "
                          "centered, velocity unless momentum.");
/* rest: 1 - alpha in float64, then rounded to the arrays' type, as the reference computes it */
#define RMSPROP_CALL(T)                                                                                            \
    rmsprop_##T(ARRAY(T, 0), ARRAY(T, 1), ARRAY(T, 2), ARRAY(T, 3), ARRAY(T, 4), call.n, SCALAR(T, 0),             \
                SCALAR(T, 1), (T)(1.0 - call.scalars[1]), SCALAR(T, 2), SCALAR(T, 3), SCALAR(T, 4), call.flags)

static const Signature ADAGRAD = {"adagrad", 3, 3, 1, {"param", "grad", "squared_sum"}, 0x5u, {ALWAYS, ALWAYS, ALWAYS}};
PyDoc_STRVAR(adagrad_doc, "adagrad(param, grad, squared_sum, lr, eps, weight_decay, decay)\n\nscratch/optim.py "
                          "Adagrad.");
#define ADAGRAD_CALL(T)                                                                                            \
    adagrad_##T(ARRAY(T, 0), ARRAY(T, 1), ARRAY(T, 2), call.n, SCALAR(T, 0), SCALAR(T, 1), SCALAR(T, 2), call.flags)

#define DEFINE_PY_FUNCTION(NAME, SIGNATURE, CALL)                                                                  \
    static PyObject *py_##NAME(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {                        \
        (void)module;                                                                                              \
        Call call;                                                                                                 \
        if (parse(args, nargs, &SIGNATURE, &call) < 0)                                                             \
            return NULL;                                                                                           \
        Py_BEGIN_ALLOW_THREADS                                                                                     \
        if (call.type == 'f')                                                                                      \
            CALL(float);                                                                                           \
        else                                                                                                       \
            CALL(double);                                                                                          \
        Py_END_ALLOW_THREADS                                                                                       \
        release(&call);                                                                                            \
        Py_RETURN_NONE;                                                                                            \
    }

DEFINE_PY_FUNCTION(sgd, SGD, SGD_CALL)
DEFINE_PY_FUNCTION(adam, ADAM, ADAM_CALL)
DEFINE_PY_FUNCTION(rmsprop, RMSPROP, RMSPROP_CALL)
DEFINE_PY_FUNCTION(adagrad, ADAGRAD, ADAGRAD_CALL)

/* --- the softmax cross-entropy's own passes, around NumPy's exp and log (scratch/losses.py) -------------------- */

/* NumPy's add.reduce of a contiguous vector of T, operation for operation: pairwise above 8 values, with eight
 * running sums of T per block of up to 128 (numpy/_core/src/umath/loops_utils.h.src, @TYPE@_pairwise_sum). */
#define DEFINE_PAIRWISE_SUM(T)                                                                                   \
    static T pairwise_sum_##T(const T *a, Py_ssize_t n) {                                                        \
        if (n < 8) {                                                                                             \
            T res = 0.;                                                                                          \
            for (Py_ssize_t i = 0; i < n; i++)                                                                   \
                res += a[i];                                                                                     \
            return res;                                                                                          \
        }                                                                                                        \
        if (n <= 128) {                                                                                          \
            T r[8];                                                                                              \
            Py_ssize_t i;                                                                                        \
            for (int j = 0; j < 8; j++)                                                                          \
                r[j] = a[j];                                                                                     \
            for (i = 8; i < n - (n % 8); i += 8)                                                                 \
                for (int j = 0; j < 8; j++)                                                                      \
                    r[j] += a[i + j];                                                                            \
            T res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));                           \
            for (; i < n; i++)                                                                                   \
                res += a[i];                                                                                     \
            return res;                                                                                          \
        }                                                                                                        \
        Py_ssize_t n2 = n / 2;                                                                                   \
        n2 -= n2 % 8;                                                                                            \
        return pairwise_sum_##T(a, n2) + pairwise_sum_##T(a + n2, n - n2);                                       \
    }

DEFINE_PAIRWISE_SUM(float)
DEFINE_PAIRWISE_SUM(double)

/* Logits are (n, k) Fortran-ordered: column j holds class j of every row, at j * n. */
#define DEFINE_LOSS_LOOPS(T)                                                                                     \
    static void loss_shift_##T(T *logits, const int64_t *labels, T *true_shifted, Py_ssize_t n, Py_ssize_t k) { \
        T *row_max = true_shifted; /* the row maxima first, then each row's shifted true logit */               \
        for (Py_ssize_t i = 0; i < n; i++)                                                                       \
            row_max[i] = logits[i];                                                                              \
        for (Py_ssize_t j = 1; j < k; j++)                                                                       \
            for (Py_ssize_t i = 0; i < n; i++) {                                                                 \
                T value = logits[j * n + i];                                                                     \
                /* as np.maximum(row_max, value): the first NaN propagates, a tie (-0, +0) gives value; a        \
                 * select, not an if, so that the loop vectorizes */                                            \
                row_max[i] = (row_max[i] > value || row_max[i] != row_max[i]) ? row_max[i] : value;              \
            }                                                                                                    \
        for (Py_ssize_t j = 0; j < k; j++)                                                                       \
            for (Py_ssize_t i = 0; i < n; i++)                                                                   \
                logits[j * n + i] = logits[j * n + i] - row_max[i];                                              \
        for (Py_ssize_t i = 0; i < n; i++)                                                                       \
            true_shifted[i] = logits[labels[i] * n + i];                                                         \
    }                                                                                                            \
                                                                                                                 \
    static double loss_finish_##T(T *probs, const int64_t *labels, const T *sums, double *log_sums,              \
                                  const T *true_shifted, Py_ssize_t n, Py_ssize_t k) {                           \
        for (Py_ssize_t i = 0; i < n; i++)                                                                       \
            log_sums[i] = log_sums[i] - (double)true_shifted[i];                                                 \
        double loss = pairwise_sum_double(log_sums, n);                                                          \
        for (Py_ssize_t j = 0; j < k; j++)                                                                       \
            for (Py_ssize_t i = 0; i < n; i++)                                                                   \
                probs[j * n + i] = probs[j * n + i] / (sums[i] * (T)n);                                          \
        T share = (T)(1.0 / (double)n);                                                                          \
        for (Py_ssize_t i = 0; i < n; i++)                                                                       \
            probs[labels[i] * n + i] = probs[labels[i] * n + i] - share;                                         \
        return loss;                                                                                             \
    }

DEFINE_LOSS_LOOPS(float)
DEFINE_LOSS_LOOPS(double)

/* What a batch function takes: `count` buffers, the first the (n, k) batch array (float32 or float64) in the order
 * shapes[0] names ('F': Fortran, the loss's logits; 'C': C, a dense layer's activations), each other of shape
 * shapes[m] ('n': (n,); 'k': (k,); 'B': (n, k) in the batch's order) and of type types[m] ('q': int64 labels in
 * [0, k); 'd': float64; 0: the batch's type); buffer m is written where bit m of `written` is set. */
typedef struct {
    const char *function;
    int count;
    const char *names[5];
    char types[5];
    char shapes[5];
    unsigned written;
} BatchSignature;

/* One batch call's buffers, read per its BatchSignature. */
typedef struct {
    Py_buffer views[5];
    int count;
    char type;
    Py_ssize_t n, k;
} BatchCall;

static void release_batch(BatchCall *call) {
    for (int m = 0; m < call->count; m++)
        PyBuffer_Release(&call->views[m]);
}

static const char *type_name(char type) { return type == 'q' ? "int64" : (type == 'f' ? "float32" : "float64"); }

/* Buffer m of the call from `object`; 0 on success, -1 with a Python error set. */
static int acquire_batch(BatchCall *call, const BatchSignature *sig, int m, PyObject *object) {
    const char *name = sig->names[m];
    Py_buffer *view = &call->views[m];
    int order = sig->shapes[0] == 'F' ? PyBUF_F_CONTIGUOUS : PyBUF_C_CONTIGUOUS;
    int request = (m == 0 || sig->shapes[m] == 'B' ? order : PyBUF_C_CONTIGUOUS) | PyBUF_FORMAT
                  | (((sig->written >> m) & 1u) ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(object, view, request) < 0)
        return -1;
    call->count = m + 1;
    char format = format_of(view);
    if (m == 0) {
        if (view->ndim != 2 || !is_float(view)) {
            PyErr_Format(PyExc_TypeError, "%s: a 2-D float32 or float64 array is needed", name);
            return -1;
        }
        call->type = format;
        call->n = view->shape[0];
        call->k = view->shape[1];
        return 0;
    }
    bool integer = sig->types[m] == 'q';
    char wanted = sig->types[m] ? sig->types[m] : call->type;
    bool matches = integer ? ((format == 'l' || format == 'q') && view->itemsize == 8) : format == wanted;
    Py_ssize_t length = sig->shapes[m] == 'n' ? call->n : call->k;
    bool shaped = sig->shapes[m] == 'B' ? view->ndim == 2 && view->shape[0] == call->n && view->shape[1] == call->k
                                        : view->ndim == 1 && view->shape[0] == length;
    if (!matches || !shaped) {
        if (sig->shapes[m] == 'B')
            PyErr_Format(PyExc_ValueError, "%s: (%zd, %zd) of %s is needed", name, call->n, call->k, type_name(wanted));
        else
            PyErr_Format(PyExc_ValueError, "%s: (%zd,) of %s is needed", name, length, type_name(wanted));
        return -1;
    }
    for (int other = 0; other < m; other++) {
        if (overlaps(view, &call->views[other])) {
            PyErr_Format(PyExc_ValueError, "%s overlaps %s", name, sig->names[other]);
            return -1;
        }
    }
    if (integer) {
        const int64_t *labels = view->buf;
        for (Py_ssize_t i = 0; i < call->n; i++)
            if (labels[i] < 0 || labels[i] >= call->k) {
                PyErr_Format(PyExc_IndexError, "%s: %lld is not a class of %zd", name, (long long)labels[i], call->k);
                return -1;
            }
    }
    return 0;
}

/* Read args per `sig` into *call; 0 on success, -1 with a Python error set and nothing held. */
static int parse_batch(PyObject *const *args, Py_ssize_t nargs, const BatchSignature *sig, BatchCall *call) {
    call->count = 0;
    if (nargs != sig->count) {
        PyErr_Format(PyExc_TypeError, "%s() takes %d arguments (%zd given)", sig->function, sig->count, nargs);
        return -1;
    }
    for (int m = 0; m < sig->count; m++) {
        if (acquire_batch(call, sig, m, args[m]) < 0) {
            release_batch(call);
            return -1;
        }
    }
    return 0;
}

#define BUF(m) (call.views[m].buf)

/* A Python function returning None: its buffers read per SIGNATURE, then NAME_<type>(the buffers, call.n, call.k) */
#define DEFINE_BATCH_FUNCTION(NAME, SIGNATURE, ...)                                                              \
    static PyObject *py_##NAME(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {                      \
        (void)module;                                                                                            \
        BatchCall call;                                                                                          \
        if (parse_batch(args, nargs, &SIGNATURE, &call) < 0)                                                     \
            return NULL;                                                                                         \
        if (call.type == 'f')                                                                                    \
            NAME##_float(__VA_ARGS__, call.n, call.k);                                                           \
        else                                                                                                     \
            NAME##_double(__VA_ARGS__, call.n, call.k);                                                          \
        release_batch(&call);                                                                                    \
        Py_RETURN_NONE;                                                                                          \
    }

static const BatchSignature LOSS_SHIFT = {"loss_shift", 3, {"logits", "labels", "true_shifted"}, {0, 'q', 0},
                                          {'F', 'n', 'n'}, 0x5u};
PyDoc_STRVAR(loss_shift_doc, "loss_shift(logits, labels, true_shifted)\n\nscratch/losses.py: logits -= each row's "
                             "maximum, in place; true_shifted[i] = the shifted logits[i, labels[i]].");

DEFINE_BATCH_FUNCTION(loss_shift, LOSS_SHIFT, BUF(0), BUF(1), BUF(2))

static const BatchSignature LOSS_FINISH = {"loss_finish", 5, {"probs", "labels", "sums", "log_sums", "true_shifted"},
                                          {0, 'q', 0, 'd', 0}, {'F', 'n', 'n', 'n', 'n'}, 0x9u};
PyDoc_STRVAR(loss_finish_doc, "loss_finish(probs, labels, sums, log_sums, true_shifted) -> float\n\n"
                              "scratch/losses.py: the summed loss (NumPy's add.reduce of log_sums - true_shifted, "
                              "log_sums overwritten); probs = probs / (sums * n) - onehot / n, in place.");

static PyObject *py_loss_finish(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    BatchCall call;
    if (parse_batch(args, nargs, &LOSS_FINISH, &call) < 0)
        return NULL;
    double loss = call.type == 'f' ? loss_finish_float(BUF(0), BUF(1), BUF(2), BUF(3), BUF(4), call.n, call.k)
                                   : loss_finish_double(BUF(0), BUF(1), BUF(2), BUF(3), BUF(4), call.n, call.k);
    release_batch(&call);
    return PyFloat_FromDouble(loss);
}

/* --- the output layer's bias passes, on the (n, k) Fortran-ordered logits and their gradient (scratch/layers.py) - */

#define DEFINE_OUTPUT_BIAS_LOOPS(T)                                                                              \
    static void bias_add_##T(T *restrict out, const T *restrict b, Py_ssize_t n, Py_ssize_t k) {                 \
        for (Py_ssize_t j = 0; j < k; j++)                                                                       \
            for (Py_ssize_t i = 0; i < n; i++)                                                                   \
                out[j * n + i] = out[j * n + i] + b[j];                                                          \
    }                                                                                                            \
                                                                                                                 \
    /* np.add.reduce over axis 0 of a Fortran-ordered array: each column pairwise, added to +0 (so -0 sums to +0) */\
    static void bias_grad_##T(const T *restrict dout, T *restrict db, Py_ssize_t n, Py_ssize_t k) {              \
        for (Py_ssize_t j = 0; j < k; j++)                                                                       \
            db[j] = (T)0 + pairwise_sum_##T(dout + j * n, n);                                                    \
    }

DEFINE_OUTPUT_BIAS_LOOPS(float)
DEFINE_OUTPUT_BIAS_LOOPS(double)

static const BatchSignature BIAS_ADD = {"bias_add", 2, {"out", "b"}, {0, 0}, {'F', 'k'}, 0x1u};
PyDoc_STRVAR(bias_add_doc, "bias_add(out, b)\n\nscratch/layers.py: out += b, in place; out (n, k) Fortran-ordered, "
                           "b (k,).");

DEFINE_BATCH_FUNCTION(bias_add, BIAS_ADD, BUF(0), BUF(1))

static const BatchSignature BIAS_GRAD = {"bias_grad", 2, {"dout", "db"}, {0, 0}, {'F', 'k'}, 0x2u};
PyDoc_STRVAR(bias_grad_doc, "bias_grad(dout, db)\n\nscratch/layers.py: db = the sum of dout's rows, as NumPy's "
                            "add.reduce over axis 0; dout (n, k) Fortran-ordered, db (k,).");

DEFINE_BATCH_FUNCTION(bias_grad, BIAS_GRAD, BUF(0), BUF(1))

/* --- a hidden ReLU layer's passes, each fused with its bias part (scratch/layers.py) ------------------------- */

/* Activations are (n, k) C-ordered: row i holds the k units of sample i, at i * k. */
#define DEFINE_LAYER_LOOPS(T)                                                                                    \
    /* out = max(out + b, 0) as np.maximum: a NaN stays (its payload too), -0 becomes +0 */                      \
    CLONED static void bias_relu_##T(T *restrict out, const T *restrict b, Py_ssize_t n, Py_ssize_t k) {         \
        for (Py_ssize_t i = 0; i < n; i++)                                                                       \
            for (Py_ssize_t j = 0; j < k; j++) {                                                                 \
                T value = out[i * k + j] + b[j];                                                                 \
                out[i * k + j] = (value > 0 || value != value) ? value : (T)0;                                   \
            }                                                                                                    \
    }                                                                                                            \
                                                                                                                 \
    /* dout *= (out > 0), as np.multiply by the bool mask; db = the column sums of the result, as np.add.reduce  \
     * over axis 0 of a C-ordered array adds them: row by row from 0 (+0, so that -0 sums to +0) */            \
    CLONED static void relu_backward_bias_grad_##T(T *restrict dout, const T *restrict out, T *restrict db,       \
                                                  Py_ssize_t n, Py_ssize_t k) {                                  \
        for (Py_ssize_t j = 0; j < k; j++)                                                                       \
            db[j] = 0;                                                                                           \
        for (Py_ssize_t i = 0; i < n; i++)                                                                       \
            for (Py_ssize_t j = 0; j < k; j++) {                                                                 \
                T mask = (T)(out[i * k + j] > 0); /* no ?: here: GCC turns one into a branch, unvectorized */     \
                T gradient = dout[i * k + j] * mask;                                                             \
                dout[i * k + j] = gradient;                                                                      \
                db[j] = db[j] + gradient;                                                                        \
            }                                                                                                    \
    }

DEFINE_LAYER_LOOPS(float)
DEFINE_LAYER_LOOPS(double)

static const BatchSignature BIAS_RELU = {"bias_relu", 2, {"out", "b"}, {0, 0}, {'C', 'k'}, 0x1u};
PyDoc_STRVAR(bias_relu_doc, "bias_relu(out, b)\n\nscratch/layers.py: out = max(out + b, 0), in place; out (n, k) "
                            "C-ordered, b (k,).");

DEFINE_BATCH_FUNCTION(bias_relu, BIAS_RELU, BUF(0), BUF(1))

static const BatchSignature RELU_BACKWARD_BIAS_GRAD = {"relu_backward_bias_grad", 3, {"dout", "out", "db"}, {0, 0, 0},
                                                       {'C', 'B', 'k'}, 0x5u};
PyDoc_STRVAR(relu_backward_bias_grad_doc,
             "relu_backward_bias_grad(dout, out, db)\n\nscratch/layers.py: dout *= (out > 0), in place; db = the sum "
             "of dout's rows; dout and out (n, k) C-ordered, db (k,).");

DEFINE_BATCH_FUNCTION(relu_backward_bias_grad, RELU_BACKWARD_BIAS_GRAD, BUF(0), BUF(1), BUF(2))

/* The instruction set of the clone the loader picks: the first of target_clones' list the CPU supports. */
static const char *instruction_set(void) {
#ifdef CLONE_ISAS
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        return "avx512f";
    if (__builtin_cpu_supports("avx2"))
        return "avx2";
    return "x86-64 baseline";
#else
    return "baseline (no clones on this platform)";
#endif
}

static PyMethodDef methods[] = {
    {"sgd", (PyCFunction)(void (*)(void))py_sgd, METH_FASTCALL, sgd_doc},
    {"adam", (PyCFunction)(void (*)(void))py_adam, METH_FASTCALL, adam_doc},
    {"rmsprop", (PyCFunction)(void (*)(void))py_rmsprop, METH_FASTCALL, rmsprop_doc},
    {"adagrad", (PyCFunction)(void (*)(void))py_adagrad, METH_FASTCALL, adagrad_doc},
    {"loss_shift", (PyCFunction)(void (*)(void))py_loss_shift, METH_FASTCALL, loss_shift_doc},
    {"loss_finish", (PyCFunction)(void (*)(void))py_loss_finish, METH_FASTCALL, loss_finish_doc},
    {"bias_add", (PyCFunction)(void (*)(void))py_bias_add, METH_FASTCALL, bias_add_doc},
    {"bias_grad", (PyCFunction)(void (*)(void))py_bias_grad, METH_FASTCALL, bias_grad_doc},
    {"bias_relu", (PyCFunction)(void (*)(void))py_bias_relu, METH_FASTCALL, bias_relu_doc},
    {"relu_backward_bias_grad", (PyCFunction)(void (*)(void))py_relu_backward_bias_grad, METH_FASTCALL,
     relu_backward_bias_grad_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_definition = {
    PyModuleDef_HEAD_INIT, "_kernels",
    "The fused optimizer steps of scratch/optim.py, loss passes of scratch/losses.py and layer passes of "
    "scratch/layers.py, from scratch/kernels.c.",
    -1, methods,
};

PyMODINIT_FUNC PyInit__kernels(void) {
    PyObject *module = PyModule_Create(&module_definition);
    if (module == NULL)
        return NULL;
    if (PyModule_AddStringConstant(module, "SOURCE_SHA256", KERNELS_SOURCE_SHA256) < 0
        || PyModule_AddStringConstant(module, "INSTRUCTION_SET", instruction_set()) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
