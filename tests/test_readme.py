"""The README's "Bring your own model and optimiser" block runs as written."""
import contextlib
import io
import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _block(heading: str) -> str:
    text = README.read_text()
    section = text[text.index(f"## {heading}"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_bring_your_own_model_and_optimizer_block_runs_and_learns(unoptimised_compile):
    out = io.StringIO()
    namespace = {}
    with contextlib.redirect_stdout(out):
        exec(compile(_block("Bring your own model and optimiser"), str(README), "exec"), namespace)
    result = namespace["result"]
    assert out.getvalue().startswith("{'acc'")
    # XOR of the two modalities: the fused head learns it, each unimodal head stays at chance
    assert all(r["acc"] > 0.8 for r in result.test)
    assert all(abs(r["acc/x0"] - 0.5) < 0.05 and abs(r["acc/x1"] - 0.5) < 0.05 for r in result.test)
    assert result.trainer.traces == 1
