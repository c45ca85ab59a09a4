"""Sphinx configuration of the jaxmm documentation (built, warnings as errors, by tests/test_docs.py)."""
import importlib
import pkgutil

from docutils.parsers.rst import Directive, directives

import jaxmm

project = "jaxmm"
release = jaxmm.__version__
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax", "myst_parser", "sphinxarg.ext"]
myst_enable_extensions = ["dollarmath", "amsmath"]
napoleon_numpy_docstring = False
autodoc_member_order = "bysource"
smartquotes = False  # keep "--flag" and quotes in the CLI help as typed
html_theme = "alabaster"


class AutoModules(Directive):
    """``.. automodules:: package``: a section with ``automodule`` for each public module of the package.

    Options: ``:underline:`` the section underline character (default ``-``); ``:exclude:``
    module names to leave out (space-separated).
    """

    required_arguments = 1
    option_spec = {"underline": directives.unchanged, "exclude": directives.unchanged}

    def run(self):
        package = importlib.import_module(self.arguments[0])
        underline = self.options.get("underline", "-")
        exclude = self.options.get("exclude", "").split()
        lines = []
        for info in pkgutil.iter_modules(package.__path__):
            if info.ispkg or info.name.startswith("_") or info.name in exclude:
                continue
            title = f"``{package.__name__}.{info.name}``"
            lines += [title, underline * len(title), "", f".. automodule:: {package.__name__}.{info.name}",
                      "   :members:", ""]
        self.state_machine.insert_input(lines, self.arguments[0])
        return []


def _skip_field_aliases(app, what, name, obj, skip, options):
    """NamedTuple fields are described in their class's ``Attributes:`` section, not as "Alias for field number N"."""
    if (getattr(obj, "__doc__", None) or "").startswith("Alias for field number"):
        return True
    return None


def setup(app):
    app.add_directive("automodules", AutoModules)
    app.connect("autodoc-skip-member", _skip_field_aliases)
