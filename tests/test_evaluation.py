"""The evaluate stage end to end on a temporary layout: metrics agree with scikit-learn computed here."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import synthetic_digits
from scipy.special import softmax
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from mnistbench.cli import main
from mnistbench.errors import MnistbenchError
from mnistbench.evaluation import run_evaluate, worst_mistakes
from mnistbench.io import save_npz, write_json
from mnistbench.params import load_params
from mnistbench.paths import Layout
from mnistbench.training import initial_weights, train

PARAMS = """\
data: {source: auto, split: official, test_fraction: 0.2, split_seed: 42, n_train: 300, n_val: 0, n_test: 400,
       normalize: unit}
network: {hidden: 16, activation: relu, init: xavier_uniform, dtype: float32}
seeds: [0, 1]
models:
  tiny_scratch: {impl: scratch, optimizer: adam, lr: 0.001, beta1: 0.9, beta2: 0.999, eps: 1.0e-8, weight_decay: 0.0,
                 epochs: 3, batch_size: 32, schedule: {name: constant}}
  tiny_torch: {impl: torch, optimizer: adam, lr: 0.001, beta1: 0.9, beta2: 0.999, eps: 1.0e-8, weight_decay: 0.0,
               epochs: 3, batch_size: 32, schedule: {name: constant}, device: cpu}
evaluate: {worst_mistakes: 5, throughput_repeats: 2, target_accuracy: 0.97}
"""
N_TEST = 400




def numpy_logits(weights: dict, images: np.ndarray) -> np.ndarray:
    """An independent float64 forward pass: relu(x w1 + b1) w2 + b2."""
    w = {name: value.astype(np.float64) for name, value in weights.items()}
    return np.maximum(images.astype(np.float64) @ w["w1"] + w["b1"], 0.0) @ w["w2"] + w["b2"]


@pytest.fixture
def workspace(tmp_path: Path):
    """A layout with prepared test rows, trained weights for both models and their train records."""
    params_path = tmp_path / "params.yaml"
    params_path.write_text(PARAMS, encoding="utf-8")
    params = load_params(params_path)
    layout = Layout(tmp_path)
    images, labels = synthetic_digits(300 + N_TEST, seed=0, noise=0.5)
    labels = labels.astype(np.uint8)  # as data/prepared stores them
    test_images, test_labels = images[300:], labels[300:]
    dataset_indices = np.arange(60_000, 60_000 + N_TEST, dtype=np.int64)[::-1].copy()
    save_npz(layout.prepared_split("test"), {"images": test_images, "labels": test_labels,
                                             "indices": dataset_indices})
    empty = {"images": images[:0], "labels": labels[:0]}
    weights, record = train(params.run("tiny_scratch"), params.network, 0, {"images": images[:300],
                            "labels": labels[:300]}, empty, progress=False)
    for model in ("tiny_scratch", "tiny_torch"):
        save_npz(layout.weights(model, 0), weights)
        write_json(layout.train_report(model, 0), {"status": "ok", "diverged_epoch": None, **record})
    return params, layout, weights, test_images, test_labels.astype(np.int64), dataset_indices


def evaluated(params, layout, model: str, seed: int = 0) -> dict:
    run_evaluate(params, model, seed, threads=1, layout=layout)
    text = layout.eval_report(model, seed).read_text(encoding="utf-8")
    return json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} is not valid JSON"))


def test_metrics_agree_with_scikit_learn_computed_independently(workspace):
    params, layout, weights, images, labels, _ = workspace
    report = evaluated(params, layout, "tiny_scratch")
    predicted = np.argmax(numpy_logits(weights, images), axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(labels, predicted, labels=range(10),
                                                                     zero_division=0)
    assert 0.2 < report["test_accuracy"] < 1.0, "want a model that is neither random nor perfect"
    assert report["test_accuracy"] == pytest.approx(accuracy_score(labels, predicted), abs=1e-12)
    np.testing.assert_allclose(report["per_class"]["precision"], precision, atol=1e-12)
    np.testing.assert_allclose(report["per_class"]["recall"], recall, atol=1e-12)
    np.testing.assert_allclose(report["per_class"]["f1"], f1, atol=1e-12)
    assert report["per_class"]["support"] == support.tolist()
    assert report["macro_f1"] == pytest.approx(f1_score(labels, predicted, average="macro"), abs=1e-12)
    assert report["confusion_matrix"] == confusion_matrix(labels, predicted, labels=range(10)).tolist()


def test_confusion_matrix_sums_to_the_test_rows_with_true_labels_as_rows(workspace):
    params, layout, _, _, labels, _ = workspace
    report = evaluated(params, layout, "tiny_scratch")
    matrix = np.array(report["confusion_matrix"])
    assert matrix.shape == (10, 10)
    assert matrix.sum() == report["n_test"] == N_TEST
    np.testing.assert_array_equal(matrix.sum(axis=1), np.bincount(labels, minlength=10))
    assert np.trace(matrix) / N_TEST == pytest.approx(report["test_accuracy"])


def test_test_loss_is_the_mean_cross_entropy(workspace):
    params, layout, weights, images, labels, _ = workspace
    report = evaluated(params, layout, "tiny_scratch")
    probabilities = softmax(numpy_logits(weights, images), axis=1)
    expected = -np.mean(np.log(probabilities[np.arange(len(labels)), labels]))
    assert report["test_loss"] == pytest.approx(expected, rel=1e-5)


def test_worst_mistakes_are_wrong_sorted_by_confidence_and_point_at_the_dataset(workspace):
    params, layout, weights, images, labels, dataset_indices = workspace
    report = evaluated(params, layout, "tiny_scratch")
    mistakes = report["worst_mistakes"]
    assert len(mistakes) == params.evaluate.worst_mistakes
    probabilities = softmax(numpy_logits(weights, images), axis=1)
    for mistake in mistakes:
        row = mistake["test_row"]
        assert mistake["label"] == labels[row] != mistake["predicted"]
        assert mistake["predicted"] == int(np.argmax(probabilities[row]))
        assert mistake["dataset_index"] == dataset_indices[row]
        assert mistake["probability"] == pytest.approx(max(mistake["probabilities"]))
        np.testing.assert_allclose(mistake["probabilities"], probabilities[row], atol=1e-5)
    confidences = [mistake["probability"] for mistake in mistakes]
    assert confidences == sorted(confidences, reverse=True)
    wrong = np.argmax(probabilities, axis=1) != labels
    assert confidences[0] == pytest.approx(probabilities[wrong].max(), abs=1e-5)


def test_worst_mistakes_skip_right_answers_and_non_finite_rows():
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [np.nan, np.nan], [0.6, 0.4]])
    mistakes = worst_mistakes(probabilities, np.array([0, 0, 1, 1]), None, limit=10)
    assert [m["test_row"] for m in mistakes] == [1, 3]
    assert mistakes[0]["dataset_index"] is None


def test_record_has_the_run_identity_inference_and_provenance(workspace):
    params, layout, _, _, _, _ = workspace
    report = evaluated(params, layout, "tiny_scratch")
    assert (report["model"], report["seed"], report["impl"], report["status"]) == ("tiny_scratch", 0, "scratch", "ok")
    assert report["diverged_epoch"] is None and report["nonfinite_rows"] == 0
    inference = report["inference"]
    assert inference["rows"] == N_TEST and inference["repeats"] == 2 and inference["threads"] == 1
    assert inference["images_per_second"] == pytest.approx(N_TEST / inference["best_seconds"])
    assert inference["device"] == "cpu"
    assert report["provenance"]["threads"] == 1


def test_record_names_the_exact_weights_and_test_rows_it_used(workspace):
    params, layout, _, test_images, test_labels, _ = workspace
    inputs = evaluated(params, layout, "tiny_scratch")["inputs"]
    assert inputs["weights_sha256"] == hashlib.sha256(layout.weights("tiny_scratch", 0).read_bytes()).hexdigest()
    assert inputs["test_images_sha256"] == hashlib.sha256(test_images.tobytes()).hexdigest()
    assert inputs["test_labels_sha256"] == hashlib.sha256(test_labels.astype(np.uint8).tobytes()).hexdigest()


def test_torch_and_scratch_evaluate_the_same_weights_identically(workspace):
    params, layout, _, _, _, _ = workspace
    by_scratch = evaluated(params, layout, "tiny_scratch")
    by_torch = evaluated(params, layout, "tiny_torch")
    assert by_torch["impl"] == "torch" and by_torch["inference"]["device"] == "cpu"
    assert by_torch["confusion_matrix"] == by_scratch["confusion_matrix"]
    assert by_torch["test_loss"] == pytest.approx(by_scratch["test_loss"], rel=1e-5)


def test_a_diverged_run_still_gets_a_record(workspace):
    params, layout, weights, _, _, _ = workspace
    broken = {name: np.full_like(value, np.nan) for name, value in weights.items()}
    save_npz(layout.weights("tiny_scratch", 1), broken)
    write_json(layout.train_report("tiny_scratch", 1), {"status": "diverged", "diverged_epoch": 2})
    report = evaluated(params, layout, "tiny_scratch", seed=1)
    assert report["status"] == "diverged" and report["diverged_epoch"] == 2
    assert report["test_loss"] is None
    assert report["nonfinite_rows"] == N_TEST
    assert report["worst_mistakes"] == []
    assert sum(map(sum, report["confusion_matrix"])) == N_TEST


def test_missing_weights_are_an_error_naming_the_file(workspace):
    params, layout, _, _, _, _ = workspace
    with pytest.raises(MnistbenchError, match=r"seed1\.npz is missing"):
        run_evaluate(params, "tiny_torch", 1, threads=1, layout=layout)
    assert not layout.eval_report("tiny_torch", 1).exists()


def test_unknown_model_is_an_error(workspace):
    params, layout, _, _, _, _ = workspace
    with pytest.raises(MnistbenchError, match="unknown model 'nope'"):
        run_evaluate(params, "nope", 0, threads=1, layout=layout)


def test_the_cli_evaluate_command_writes_the_record(workspace, monkeypatch):
    params, layout, _, _, _, _ = workspace
    monkeypatch.chdir(layout.root)
    assert main(["--quiet", "evaluate", "--model", "tiny_torch", "--seed", "0"]) == 0
    assert json.loads(layout.eval_report("tiny_torch", 0).read_text())["n_test"] == N_TEST
    assert main(["--quiet", "evaluate", "--model", "tiny_torch", "--seed", "1"]) == 2


def test_initial_weights_are_evaluated_near_chance(workspace):
    params, layout, _, _, _, _ = workspace
    save_npz(layout.weights("tiny_torch", 1), initial_weights(1, params.network))
    write_json(layout.train_report("tiny_torch", 1), {"status": "ok", "diverged_epoch": None})
    report = evaluated(params, layout, "tiny_torch", seed=1)
    assert report["test_accuracy"] < 0.4
    assert report["test_loss"] == pytest.approx(np.log(10), abs=0.7)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
def test_both_implementations_evaluate_a_deeper_network_as_a_plain_forward_pass(tmp_path, activation):
    params_path = tmp_path / "params.yaml"
    deep = f"network: {{hidden: [16, 8], activation: {activation}, init: xavier_uniform, dtype: float32}}"
    text = PARAMS.replace("network: {hidden: 16, activation: relu, init: xavier_uniform, dtype: float32}", deep)
    params_path.write_text(text.replace("lr: 0.001", "lr: 0.01"), encoding="utf-8")  # sigmoid learns slowly
    params = load_params(params_path)
    assert params.network.hidden == (16, 8)
    layout = Layout(tmp_path)
    images, labels = synthetic_digits(300 + N_TEST, seed=0, noise=0.5)
    save_npz(layout.prepared_split("test"), {"images": images[300:], "labels": labels[300:].astype(np.uint8),
                                             "indices": np.arange(N_TEST, dtype=np.int64)})
    empty = {"images": images[:0], "labels": labels[:0]}
    weights, record = train(params.run("tiny_scratch"), params.network, 0,
                            {"images": images[:300], "labels": labels[:300]}, empty, progress=False)
    squash = np.tanh if activation == "tanh" else (lambda x: 1.0 / (1.0 + np.exp(-x)))
    w = {name: value.astype(np.float64) for name, value in weights.items()}
    hidden = squash(squash(images[300:].astype(np.float64) @ w["w1"] + w["b1"]) @ w["w2"] + w["b2"])
    predicted = np.argmax(hidden @ w["w3"] + w["b3"], axis=1)
    assert len(np.unique(predicted)) > 1, "a network predicting one class would make the comparison empty"
    expected = float(np.mean(predicted == labels[300:]))
    for model in ("tiny_scratch", "tiny_torch"):
        save_npz(layout.weights(model, 0), weights)
        write_json(layout.train_report(model, 0), {"status": "ok", "diverged_epoch": None, **record})
        assert evaluated(params, layout, model)["test_accuracy"] == pytest.approx(expected, abs=2 / N_TEST)
