"""The documentation: the Sphinx site builds without a warning, every registered method has its page
with the code's options and defaults, and docstrings cite nothing that is not shipped."""
import pathlib
import re
import subprocess
import sys

import pytest

from jaxmm.methods import available, get_method, options_of

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
UNSHIPPED = re.compile(r"\b(?:methods|baselines|data)\.md\b|DESIGN\.md|\bspec §")


def test_site_builds_without_warnings(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(DOCS), str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "methods" / "synib.html").is_file()


def test_a_page_per_registered_method():
    pages = {p.stem for p in (DOCS / "methods").glob("*.md")} - {"index"}
    assert pages == set(available())


@pytest.mark.parametrize("name", sorted(available()))
def test_method_page_lists_the_code_options_and_defaults(name):
    """Each page has a table row ``| `name` | `default!r` |`` per option and hyper-parameter."""
    page = (DOCS / "methods" / f"{name}.md").read_text()
    required = {"modality": "x0"} if name == "unimodal" else {}
    values = {**options_of(name), **get_method(name, **required).hparams}
    missing = [f"{k}={v!r}" for k, v in values.items() if f"| `{k}` | `{v!r}` |" not in page]
    assert not missing, f"docs/methods/{name}.md lacks table rows for {missing}"


def test_getting_started_transform_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / "getting_started.md").read_text(), re.S)
    exec(next(b for b in blocks if "optax.chain" in b), {})


def test_docstrings_cite_no_unshipped_file():
    found = [f"{path.relative_to(ROOT)}:{i}" for path in sorted((ROOT / "jaxmm").rglob("*.py"))
             for i, line in enumerate(path.read_text().splitlines(), 1) if UNSHIPPED.search(line)]
    assert not found, found
