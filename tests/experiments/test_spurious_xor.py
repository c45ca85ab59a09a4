from jaxmm.experiments import spurious_xor


def test_one_tiny_sweep_writes_table_and_figure(tmp_path, capsys):
    spurious_xor.main(["--epochs", "2", "--alphas", "0.8", "--seeds", "0", "--methods", "vanilla,synib-oracle",
                       "--out-dir", str(tmp_path), "--compile-cache", ""])
    out = capsys.readouterr().out
    assert "| vanilla |" in out and "| synib-oracle |" in out
    for f in ("spurious_xor.png", "summary.md", "results.json"):
        assert (tmp_path / "spurious-xor" / f).exists()
