"""make bench-serve end to end, briefly: the real server in its own process, every row measured.

Figures are not judged here (benchmarks print them); this checks that every row was measured
without errors, with its interleaved in-process baseline, and that the stand-in path works.
"""

from __future__ import annotations

import re

from benchmarks.serve import main


def _rows(text: str) -> dict[tuple[str, str, int], list[str]]:
    rows = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 11 and fields[0] in ("gRPC", "REST") and fields[1] in ("on", "off"):
            rows[(fields[0], fields[1], int(fields[2]))] = fields
    return rows


def test_bench_serve_measures_every_row_against_a_stand_in_of_the_asked_size(model, tmp_path, capsys):
    _, card, folder = model
    size = card["crop_size"] + 16  # not the repository's size: the stand-in is written and measured
    code = main(["--model-repository", str(folder.parent), "--runs-dir", str(tmp_path / "no-runs"),
                 "--crop-size", str(size), "--seconds", "0.6", "--warmup", "1", "--concurrency", "1,8",
                 "--rest-concurrency", "2", "--unbatched-concurrency", "1"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "model: an untrained efficientnet_b0" in out and f"at {size} px" in out, out
    assert f"deepfake version 1 in {folder.parent} takes {card['crop_size']} px crops" in out, out
    rows = _rows(out)
    assert set(rows) == {("gRPC", "on", 1), ("gRPC", "on", 8), ("REST", "on", 2), ("gRPC", "off", 1),
                         ("REST", "off", 1)}, out
    for key, (_, batching, _, images, p50, p99, reference, ratio, mean_batch, requests, errors) in rows.items():
        assert int(errors) == 0 and int(requests) > 0, (key, out)
        assert float(images) > 0 and 0 < float(p50) <= float(p99), (key, out)
        assert float(reference) > 0 and ratio.endswith("x") and float(ratio[:-1]) > 0, (key, out)
        if batching == "on":
            assert 1.0 <= float(mean_batch) <= 8.0, (key, out)
        else:
            assert mean_batch == "-", (key, out)
    assert re.search(r"target: served/in-process >= 0\.9 at concurrency >= 8, .*8 clients \d+\.\d\dx\): "
                     r"(PASS|BELOW)", out), out
    assert re.search(r"target: p50 overhead at concurrency 1 <= 2 ms .* ms: (PASS|BELOW)", out), out


def test_bench_serve_without_a_model_says_what_to_do(tmp_path, caplog):
    code = main(["--model-repository", str(tmp_path / "empty"), "--seconds", "0.1"])
    assert code == 2
    assert "no model in" in caplog.text and "make train export" in caplog.text
