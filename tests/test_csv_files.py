"""Every CSV the project writes goes through the csv module: a label with commas or quotes keeps its column.

CarRacing's calibration labels read "always [0, 0.5, 0.5]"; written by string formatting, such a row
had more cells than the header, so every column after it was read as the wrong one.
"""

from __future__ import annotations

import csv

import numpy as np
import torch
from world_fixture import make_tiny_world

from analysis.temperature import temperature
from common.checkpoints import save_checkpoint
from common.csvlog import CsvLog, read_csv
from control.calibration import Calibration, CalibrationRow, write_calibration
from control.evaluate import Scores, ScoresSource, load_scores, save_scores

AWKWARD = 'always [0, 0.5, "hard" left]'  # a comma and quotes, as CarRacing's labels have


def read_back(path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows as a plain csv reader sees them; every row has exactly the header's cells."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        header = list(reader.fieldnames or [])
    assert all(None not in row and len(row) == len(header) for row in rows), rows  # no spilled or missing cells
    return header, rows


def scores(label: str, lengths: list[float], returns: list[float]) -> Scores:
    return Scores(label, list(range(len(lengths))), np.array(returns, float), np.array(lengths, float))


def test_calibration_csv_keeps_labels_with_commas_and_quotes(tmp_path):
    rows = [CalibrationRow(AWKWARD, scores("d", [10, 30], [1, 3]), scores("r", [20, 20], [2, 2])),
            CalibrationRow("random (brownian)", scores("d", [5, 5], [0.5, 0.5]), None),
            CalibrationRow("trained controller", scores("d", [40, 40], [4, 4]), scores("r", [40, 40], [4, 4]),
                           trained=True)]
    csv_path, _ = write_calibration(Calibration(rows, 1.15, 50), tmp_path)
    header, back = read_back(csv_path)
    assert header[0] == "policy" and [r["policy"] for r in back] == [AWKWARD, "random (brownian)",
                                                                      "trained controller"]
    first = back[0]
    assert (first["episodes"], first["temperature"]) == ("2", "1.15")
    assert (first["dream_length_mean"], first["dream_length_std"]) == ("20.00", "14.14")  # sample std
    assert (first["real_length_mean"], first["real_length_std"]) == ("20.00", "0.00")
    assert (first["length_ratio"], first["dream_return_mean"], first["real_return_mean"]) == ("1.000", "2.000",
                                                                                               "2.000")
    assert (first["return_ratio"], first["calibrated"]) == ("1.000", "1")
    dream_only = back[1]
    assert (dream_only["real_length_mean"], dream_only["real_return_mean"], dream_only["calibrated"]) == ("", "", "")
    assert dream_only["dream_length_mean"] == "5.00" and dream_only["length_ratio"] == "nan"


def test_score_file_keeps_policy_and_paths_with_commas_and_quotes(tmp_path):
    source = ScoresSource("real", "constant:0,1,0", 'ctl, "v2"/best.pt', "ab" * 32, "carracing",
                          {"lap": "a,\"b\""}, 1000)
    result = Scores("x", [3, 4], np.array([1.5, -2.0]), np.array([10.0, 20.0]), np.array([0.0, 2.0]))
    path = tmp_path / "real_random_constant_0_1_0.csv"
    save_scores(result, path, source)
    header, back = read_back(path)
    assert header[:4] == ["seed", "score", "length", "invalid"]
    assert [(r["seed"], r["score"], r["length"], r["invalid"]) for r in back] == [("3", "1.5", "10", "0"),
                                                                                 ("4", "-2", "20", "2")]
    for r in back:
        assert (r["world"], r["policy"], r["controller"], r["env"], r["max_steps"]) == (
            "real", "constant:0,1,0", 'ctl, "v2"/best.pt', "carracing", "1000")
        assert r["env_options"] == '{"lap": "a,\\"b\\""}' and r["temperature"] == "" and r["done"] == ""
    loaded = load_scores(path, "x")
    assert loaded.source == source and loaded.seeds == [3, 4] and list(loaded.invalid) == [0, 2]


def test_temperature_csv_lines_up_with_its_header(tmp_path):
    run = make_tiny_world(tmp_path / "run")
    save_checkpoint(run / "controller" / "best.pt", "controller", {"env": "doom"}, {"params": torch.zeros(40)})
    _, table = temperature(run, tmp_path / "figs", (0.5, 1.15), dream_episodes=2, real_episodes=0, max_steps=10,
                           progress=False)
    header, back = read_back(table)
    assert header == ["temperature", "dream_mean", "dream_std", "real_mean", "real_std"]
    assert [r["temperature"] for r in back] == ["0.5", "1.15"]
    assert all(0 < float(r["dream_mean"]) <= 10 and r["real_mean"] == "nan" for r in back), back


def test_a_log_from_a_version_with_fewer_columns_gets_the_new_header_and_keeps_its_rows(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("generation,mean_fitness\n1,-50.5\n2,-40\n")
    log = CsvLog(path, ["generation", "mean_fitness", "frames"])
    log.append({"generation": 3, "mean_fitness": -30.0, "frames": 1000})
    assert read_csv(path) == [{"generation": "1", "mean_fitness": "-50.5", "frames": ""},
                              {"generation": "2", "mean_fitness": "-40", "frames": ""},
                              {"generation": "3", "mean_fitness": "-30", "frames": "1000"}]
