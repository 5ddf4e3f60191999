/* One-loop optimizer kernels: the fast path of scratch/optim.py, held to its NumPy reference bit for bit.
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

#define DEFINE_LOOPS(T, SQRT)                                                                                    \
    INLINE void sgd_loop_##T(T *restrict param, const T *restrict grad, T *restrict velocity, Py_ssize_t n,      \
                             T lr, T momentum, T weight_decay, bool decay, bool use_momentum, bool nesterov,     \
                             bool first_step) {                                                                  \
        for (Py_ssize_t i = 0; i < n; i++) {                                                                     \
            T direction = decay ? param[i] * weight_decay + grad[i] : grad[i];                                   \
            if (use_momentum) {                                                                                  \
                T buf = first_step ? direction : velocity[i] * momentum + direction;                             \
                velocity[i] = buf;                                                                               \
                direction = nesterov ? buf * momentum + direction : buf;                                         \
            }                                                                                                    \
            param[i] = param[i] - direction * lr;                                                                \
        }                                                                                                        \
    }                                                                                                            \
                                                                                                                 \
    INLINE void adam_loop_##T(T *restrict param, const T *restrict grad, T *restrict first, T *restrict second,  \
                              Py_ssize_t n, T beta1, T beta2, T denominator_shift, T step_scale, T weight_decay, \
                              T shrink, bool decay, bool decoupled) {                                            \
        for (Py_ssize_t i = 0; i < n; i++) {                                                                     \
            if (decoupled)                                                                                       \
                param[i] = param[i] * shrink;                                                                    \
            T g = decay ? param[i] * weight_decay + grad[i] : grad[i];                                           \
            T m = first[i] * beta1 + g;                                                                          \
            first[i] = m;                                                                                        \
            T v = second[i] * beta2 + g * g;                                                                     \
            second[i] = v;                                                                                       \
            param[i] = param[i] - m / (SQRT(v) + denominator_shift) * step_scale;                                \
        }                                                                                                        \
    }                                                                                                            \
                                                                                                                 \
    INLINE void rmsprop_loop_##T(T *restrict param, const T *restrict grad, T *restrict square,                  \
                                 T *restrict average, T *restrict velocity, Py_ssize_t n, T lr, T alpha, T rest, \
                                 T eps, T momentum, T weight_decay, bool decay, bool use_momentum,               \
                                 bool centered) {                                                                \
        for (Py_ssize_t i = 0; i < n; i++) {                                                                     \
            T g = decay ? param[i] * weight_decay + grad[i] : grad[i];                                           \
            T s = square[i] * alpha + g * rest * g;                                                              \
            square[i] = s;                                                                                       \
            T denominator;                                                                                       \
            if (centered) {                                                                                      \
                T a = average[i] + (g - average[i]) * rest;                                                      \
                average[i] = a;                                                                                  \
                denominator = SQRT(s - a * a) + eps;                                                             \
            } else {                                                                                             \
                denominator = SQRT(s) + eps;                                                                     \
            }                                                                                                    \
            T update = g / denominator;                                                                          \
            if (use_momentum) {                                                                                  \
                update = velocity[i] * momentum + update;                                                        \
                velocity[i] = update;                                                                            \
            }                                                                                                    \
            param[i] = param[i] - update * lr;                                                                   \
        }                                                                                                        \
    }                                                                                                            \
                                                                                                                 \
    INLINE void adagrad_loop_##T(T *restrict param, const T *restrict grad, T *restrict squared_sum,             \
                                 Py_ssize_t n, T lr, T eps, T weight_decay, bool decay) {                        \
        for (Py_ssize_t i = 0; i < n; i++) {                                                                     \
            T g = decay ? param[i] * weight_decay + grad[i] : grad[i];                                           \
            T s = squared_sum[i] + g * g;                                                                        \
            squared_sum[i] = s;                                                                                  \
            param[i] = param[i] - g / (SQRT(s) + eps) * lr;                                                      \
        }                                                                                                        \
    }

DEFINE_LOOPS(float, sqrtf)
DEFINE_LOOPS(double, sqrt)

/* --- one specialized loop per combination of settings (bit k of `flags` is the k-th boolean) ----------------- */

#define B(F, k) ((bool)(((F) >> (k)) & 1u))
#define CASES2(CALL) CALL(0) CALL(1) CALL(2) CALL(3)
#define CASES3(CALL) CASES2(CALL) CALL(4) CALL(5) CALL(6) CALL(7)
#define CASES4(CALL) CASES3(CALL) CALL(8) CALL(9) CALL(10) CALL(11) CALL(12) CALL(13) CALL(14) CALL(15)

#define DEFINE_DISPATCH(T)                                                                                       \
    CLONED static void sgd_##T(T *param, const T *grad, T *velocity, Py_ssize_t n, T lr, T momentum,             \
                               T weight_decay, unsigned flags) {                                                 \
        switch (flags) {                                                                                         \
        /* flags: decay, use_momentum, nesterov, first_step */                                                   \
            CASES4(SGD_CASE_##T)                                                                                 \
        }                                                                                                        \
    }                                                                                                            \
    CLONED static void adam_##T(T *param, const T *grad, T *first, T *second, Py_ssize_t n, T beta1, T beta2,    \
                                T denominator_shift, T step_scale, T weight_decay, T shrink, unsigned flags) {   \
        switch (flags) { /* flags: decay, decoupled */                                                           \
            CASES2(ADAM_CASE_##T)                                                                                \
        }                                                                                                        \
    }                                                                                                            \
    CLONED static void rmsprop_##T(T *param, const T *grad, T *square, T *average, T *velocity, Py_ssize_t n,    \
                                   T lr, T alpha, T rest, T eps, T momentum, T weight_decay, unsigned flags) {   \
        switch (flags) { /* flags: decay, use_momentum, centered */                                              \
            CASES3(RMSPROP_CASE_##T)                                                                             \
        }                                                                                                        \
    }                                                                                                            \
    CLONED static void adagrad_##T(T *param, const T *grad, T *squared_sum, Py_ssize_t n, T lr, T eps,           \
                                   T weight_decay, unsigned flags) {                                             \
        switch (flags) { /* flags: decay */                                                                      \
        case 0:                                                                                                  \
            adagrad_loop_##T(param, grad, squared_sum, n, lr, eps, weight_decay, false);                         \
            break;                                                                                               \
        case 1:                                                                                                  \
            adagrad_loop_##T(param, grad, squared_sum, n, lr, eps, weight_decay, true);                          \
            break;                                                                                               \
        }                                                                                                        \
    }

#define SGD_CASE(T, F)                                                                                           \
    case F: {                                                                                                    \
        sgd_loop_##T(param, grad, velocity, n, lr, momentum, weight_decay, B(F, 0), B(F, 1), B(F, 2), B(F, 3));  \
        break;                                                                                                   \
    }
#define ADAM_CASE(T, F)                                                                                          \
    case F: {                                                                                                    \
        adam_loop_##T(param, grad, first, second, n, beta1, beta2, denominator_shift, step_scale, weight_decay,  \
                      shrink, B(F, 0), B(F, 1));                                                                 \
        break;                                                                                                   \
    }
#define RMSPROP_CASE(T, F)                                                                                       \
    case F: {                                                                                                    \
        rmsprop_loop_##T(param, grad, square, average, velocity, n, lr, alpha, rest, eps, momentum,              \
                         weight_decay, B(F, 0), B(F, 1), B(F, 2));                                               \
        break;                                                                                                   \
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

/* The arrays of one call: index 0 is param, which sets the type ('f' or 'd') and the element count. */
typedef struct {
    Py_buffer views[5];
    bool held[5];
    int count;
    char type;
    Py_ssize_t n;
} Arrays;

static void release(Arrays *arrays) {
    for (int k = 0; k < arrays->count; k++)
        if (arrays->held[k])
            PyBuffer_Release(&arrays->views[k]);
}

/* Acquire `object` as the next array of the call, or skip it where the settings do not `use` it (any object,
 * None included); 0 on success, -1 with a Python error set. */
static int acquire(Arrays *arrays, PyObject *object, const char *name, bool writable, bool use) {
    int k = arrays->count++;
    arrays->held[k] = false;
    if (!use)
        return 0;
    if (object == Py_None) {
        PyErr_Format(PyExc_TypeError, "%s: an array is needed, not None", name);
        return -1;
    }
    int request = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(object, &arrays->views[k], request) < 0)
        return -1;
    arrays->held[k] = true;
    Py_buffer *view = &arrays->views[k];
    char type = (view->format && strlen(view->format) == 1) ? view->format[0] : '?';
    if ((type != 'f' || view->itemsize != 4) && (type != 'd' || view->itemsize != 8)) {
        PyErr_Format(PyExc_TypeError, "%s: float32 or float64 elements are needed, not format '%s'", name,
                     view->format ? view->format : "B");
        return -1;
    }
    Py_ssize_t n = view->len / view->itemsize;
    if (k == 0) {
        arrays->type = type;
        arrays->n = n;
        return 0;
    }
    if (type != arrays->type || n != arrays->n) {
        PyErr_Format(PyExc_ValueError, "%s: %zd elements of type '%c' where param has %zd of type '%c'", name, n,
                     type, arrays->n, arrays->type);
        return -1;
    }
    for (int other = 0; other < k; other++) {
        if (!arrays->held[other])
            continue;
        const char *a = view->buf, *b = arrays->views[other].buf;
        if (n && a < b + arrays->views[other].len && b < a + view->len) {
            PyErr_Format(PyExc_ValueError, "%s overlaps another array of the call", name);
            return -1;
        }
    }
    return 0;
}

static void *data(Arrays *arrays, int k) { return arrays->held[k] ? arrays->views[k].buf : NULL; }

/* args[first..first+count) as doubles; -1 with a Python error set. */
static int scalars(PyObject *const *args, Py_ssize_t first, Py_ssize_t count, double *out) {
    for (Py_ssize_t k = 0; k < count; k++) {
        out[k] = PyFloat_AsDouble(args[first + k]);
        if (out[k] == -1.0 && PyErr_Occurred())
            return -1;
    }
    return 0;
}

/* args[first..first+count) as truth values packed into bits 0.. of *flags; -1 with a Python error set. */
static int booleans(PyObject *const *args, Py_ssize_t first, Py_ssize_t count, unsigned *flags) {
    *flags = 0;
    for (Py_ssize_t k = 0; k < count; k++) {
        int truth = PyObject_IsTrue(args[first + k]);
        if (truth < 0)
            return -1;
        *flags |= (unsigned)truth << k;
    }
    return 0;
}

static int check_count(const char *function, Py_ssize_t given, Py_ssize_t expected) {
    if (given == expected)
        return 0;
    PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments (%zd given)", function, expected, given);
    return -1;
}

/* --- the Python functions ------------------------------------------------------------------------------------ */

PyDoc_STRVAR(sgd_doc, "sgd(param, grad, velocity, lr, momentum, weight_decay, decay, use_momentum, nesterov, "
                      "first_step)\n\nscratch/optim.py SGD; velocity may be None without momentum.");

static PyObject *py_sgd(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    Arrays arrays = {.count = 0};
    double s[3];
    unsigned flags;
    if (check_count("sgd", nargs, 10) < 0)
        return NULL;
    if (scalars(args, 3, 3, s) < 0 || booleans(args, 6, 4, &flags) < 0)
        return NULL;
    bool use_momentum = flags & 2u;
    if (acquire(&arrays, args[0], "param", true, true) < 0 || acquire(&arrays, args[1], "grad", false, true) < 0
        || acquire(&arrays, args[2], "velocity", true, use_momentum) < 0) {
        release(&arrays);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    if (arrays.type == 'f')
        sgd_float(data(&arrays, 0), data(&arrays, 1), data(&arrays, 2), arrays.n, (float)s[0], (float)s[1],
                  (float)s[2], flags);
    else
        sgd_double(data(&arrays, 0), data(&arrays, 1), data(&arrays, 2), arrays.n, s[0], s[1], s[2], flags);
    Py_END_ALLOW_THREADS
    release(&arrays);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(adam_doc, "adam(param, grad, first, second, beta1, beta2, denominator_shift, step_scale, weight_decay, "
                       "shrink, decay, decoupled)\n\nscratch/optim.py Adam / AdamW on the scaled moments; decoupled "
                       "is AdamW's param *= shrink first.");

static PyObject *py_adam(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    Arrays arrays = {.count = 0};
    double s[6];
    unsigned flags;
    if (check_count("adam", nargs, 12) < 0)
        return NULL;
    if (scalars(args, 4, 6, s) < 0 || booleans(args, 10, 2, &flags) < 0)
        return NULL;
    if (acquire(&arrays, args[0], "param", true, true) < 0 || acquire(&arrays, args[1], "grad", false, true) < 0
        || acquire(&arrays, args[2], "first", true, true) < 0
        || acquire(&arrays, args[3], "second", true, true) < 0) {
        release(&arrays);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    if (arrays.type == 'f')
        adam_float(data(&arrays, 0), data(&arrays, 1), data(&arrays, 2), data(&arrays, 3), arrays.n, (float)s[0],
                   (float)s[1], (float)s[2], (float)s[3], (float)s[4], (float)s[5], flags);
    else
        adam_double(data(&arrays, 0), data(&arrays, 1), data(&arrays, 2), data(&arrays, 3), arrays.n, s[0], s[1],
                    s[2], s[3], s[4], s[5], flags);
    Py_END_ALLOW_THREADS
    release(&arrays);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(rmsprop_doc, "rmsprop(param, grad, square, average, velocity, lr, alpha, eps, momentum, weight_decay, "
                          "decay, use_momentum, centered)\n\nscratch/optim.py RMSprop; average may be None unless "
                          "centered, velocity unless momentum.");

static PyObject *py_rmsprop(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    Arrays arrays = {.count = 0};
    double s[5];
    unsigned flags;
    if (check_count("rmsprop", nargs, 13) < 0)
        return NULL;
    if (scalars(args, 5, 5, s) < 0 || booleans(args, 10, 3, &flags) < 0)
        return NULL;
    bool use_momentum = flags & 2u, centered = flags & 4u;
    if (acquire(&arrays, args[0], "param", true, true) < 0 || acquire(&arrays, args[1], "grad", false, true) < 0
        || acquire(&arrays, args[2], "square", true, true) < 0
        || acquire(&arrays, args[3], "average", true, centered) < 0
        || acquire(&arrays, args[4], "velocity", true, use_momentum) < 0) {
        release(&arrays);
        return NULL;
    }
    double rest = 1.0 - s[1]; /* as the reference: 1 - alpha in float64, then rounded to the arrays' type */
    Py_BEGIN_ALLOW_THREADS
    if (arrays.type == 'f')
        rmsprop_float(data(&arrays, 0), data(&arrays, 1), data(&arrays, 2), data(&arrays, 3), data(&arrays, 4),
                      arrays.n, (float)s[0], (float)s[1], (float)rest, (float)s[2], (float)s[3], (float)s[4], flags);
    else
        rmsprop_double(data(&arrays, 0), data(&arrays, 1), data(&arrays, 2), data(&arrays, 3), data(&arrays, 4),
                       arrays.n, s[0], s[1], rest, s[2], s[3], s[4], flags);
    Py_END_ALLOW_THREADS
    release(&arrays);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(adagrad_doc, "adagrad(param, grad, squared_sum, lr, eps, weight_decay, decay)\n\nscratch/optim.py "
                          "Adagrad.");

static PyObject *py_adagrad(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    Arrays arrays = {.count = 0};
    double s[3];
    unsigned flags;
    if (check_count("adagrad", nargs, 7) < 0)
        return NULL;
    if (scalars(args, 3, 3, s) < 0 || booleans(args, 6, 1, &flags) < 0)
        return NULL;
    if (acquire(&arrays, args[0], "param", true, true) < 0 || acquire(&arrays, args[1], "grad", false, true) < 0
        || acquire(&arrays, args[2], "squared_sum", true, true) < 0) {
        release(&arrays);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    if (arrays.type == 'f')
        adagrad_float(data(&arrays, 0), data(&arrays, 1), data(&arrays, 2), arrays.n, (float)s[0], (float)s[1],
                      (float)s[2], flags);
    else
        adagrad_double(data(&arrays, 0), data(&arrays, 1), data(&arrays, 2), arrays.n, s[0], s[1], s[2], flags);
    Py_END_ALLOW_THREADS
    release(&arrays);
    Py_RETURN_NONE;
}

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
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_definition = {
    PyModuleDef_HEAD_INIT, "_kernels",
    "The fused optimizer steps of scratch/optim.py, compiled from scratch/kernels.c.", -1, methods,
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
