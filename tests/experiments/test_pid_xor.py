import json

from jaxmm.experiments import _pid, pid_xor, pid_xor_masking_control


def test_target_points_lie_on_the_fig7_plane():
    for p in _pid.target_points():
        assert p[1] == 0 and abs(sum(p) - 1) < 1e-9 and p[0] == p[2]


def test_tiny_pid_sweep_selects_lambda_by_validation(tmp_path, capsys):
    pid_xor.main(["--width", "8", "--epochs", "1", "--seeds", "0", "--lams", "0.1,10", "--methods",
                  "vanilla,synib-oracle", "--eval-train", "--out-dir", str(tmp_path)])
    assert "Synergy-source test accuracy" in capsys.readouterr().out
    out = tmp_path / "pid-xor-targets"
    results = json.loads((out / "results.json").read_text())
    assert all(lam[0] in (0.1, 10.0) for lam in results["lam"]["synib-oracle"])
    assert (out / "sources.png").exists() and (out / "summary.md").exists()


def test_tiny_masking_control(tmp_path):
    pid_xor_masking_control.main(["--width", "8", "--epochs", "1", "--seeds", "0", "--methods", "masking-random",
                                  "--out-dir", str(tmp_path)])
    assert (tmp_path / "pid-xor-masking-control-targets" / "masking_control.png").exists()
