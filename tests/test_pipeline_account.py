"""The report's account of the pipeline's time (wall, the jobs' own time, the floor on the cores used, their ratio),
computed from made-up job clocks and records."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from mnistbench.report.context import pipeline_account

# (start, seconds) of each job, in Unix seconds: download, prepare, three training jobs two at a time, evaluations.
DOWNLOAD, PREPARE = (1000.0, 5.0), (1006.0, 3.0)
TRAIN = {"a": (1010.0, 20.0), "b": (1010.0, 30.0), "c": (1031.0, 20.0)}
TRAINING_LOOPS = {"a": 18.0, "b": 28.0, "c": 19.0}
EVALUATE = {"a": (1041.0, 2.0), "b": (1041.0, 1.0), "c": (1051.0, 1.0)}
REPORT_STARTED, NOW = 1053.0, 1058.0


def clock(start_seconds: tuple[float, float]) -> dict[str, float]:
    return {"started": start_seconds[0], "seconds": start_seconds[1]}


@pytest.fixture
def inputs(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "download.job.json").write_text(json.dumps(clock(DOWNLOAD)))
    (logs / "prepare.job.json").write_text(json.dumps(clock(PREPARE)))
    runs = [SimpleNamespace(model=model, seed=0,
                            train={"job": clock(TRAIN[model]), "wall_seconds": TRAINING_LOOPS[model],
                                   "provenance": {"cpu_count": 2}},
                            evaluation={"job": clock(EVALUATE[model])})
            for model in TRAIN]
    return SimpleNamespace(runs=runs, layout=SimpleNamespace(logs_dir=logs))


def test_wall_runs_from_the_earliest_job_start_to_the_report(inputs):
    assert pipeline_account(inputs, REPORT_STARTED, NOW)["wall"] == NOW - DOWNLOAD[0]


def test_work_is_the_sum_of_every_jobs_own_time(inputs):
    account = pipeline_account(inputs, REPORT_STARTED, NOW)
    assert account["work"] == 5 + 3 + (20 + 30 + 20) + (2 + 1 + 1) + 5
    assert account["jobs"] == 9


def test_the_floor_is_the_serial_stages_plus_the_training_loops_over_the_cores_used(inputs):
    account = pipeline_account(inputs, REPORT_STARTED, NOW)
    assert account["cores"] == 2  # never more than two jobs at once
    assert account["serial"] == 5 + 3 + (NOW - REPORT_STARTED)
    assert account["floor"] == pytest.approx(13 + (18 + 28 + 19) / 2)
    assert account["ratio"] == pytest.approx(58 / 45.5)


def test_idle_is_the_wall_time_in_which_no_job_ran(inputs):
    # 1005-1006, 1009-1010 and 1052-1053
    assert pipeline_account(inputs, REPORT_STARTED, NOW)["idle"] == pytest.approx(3.0)


def test_the_busy_ratio_leaves_out_the_time_no_job_ran(inputs):
    """As after a partial rerun: download and prepare an hour before the rest."""
    account = pipeline_account(inputs, REPORT_STARTED, NOW)
    assert account["busy_ratio"] == pytest.approx((58 - 3) / 45.5)
    (inputs.layout.logs_dir / "download.job.json").write_text(json.dumps(clock((DOWNLOAD[0] - 3600, 5.0))))
    (inputs.layout.logs_dir / "prepare.job.json").write_text(json.dumps(clock((PREPARE[0] - 3600, 3.0))))
    rerun = pipeline_account(inputs, REPORT_STARTED, NOW)
    assert rerun["ratio"] == pytest.approx((NOW - DOWNLOAD[0] + 3600) / 45.5)
    # Busy: the hour-old 5 + 3 s, and 1010..1058 but for 1052..1053
    assert rerun["busy_ratio"] == pytest.approx((8 + 47) / 45.5)


def test_the_cores_used_never_exceed_the_machines(inputs):
    for run in inputs.runs:
        run.train["provenance"]["cpu_count"] = 1
    account = pipeline_account(inputs, REPORT_STARTED, NOW)
    assert (account["cores"], account["floor"]) == (1, pytest.approx(13 + 65))


def test_records_without_a_job_clock_are_named_instead_of_guessed(inputs):
    del inputs.runs[1].evaluation["job"]
    (inputs.layout.logs_dir / "prepare.job.json").unlink()
    assert pipeline_account(inputs, REPORT_STARTED, NOW) == {"missing": ["evaluate b seed 0", "prepare"]}
