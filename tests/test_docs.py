"""The documentation: docstrings of the public API, the example gallery, the build.

The fast tests check what the Sphinx site is made of (every public name has a
numpydoc docstring that documents its parameters, every public name appears in
``doc/api.rst``, every example has a gallery title). The slow test builds the
site with warnings as errors, as ``make -C doc html`` does, without running the
gallery examples.
"""

import ast
import importlib
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "doc"
EXAMPLES = ROOT / "examples"

PUBLIC_MODULES = [
    "skbilevel",
    "skbilevel.hypergrad",
    "skbilevel.outer",
    "skbilevel.search",
    "skbilevel.solvers",
    "skbilevel.model_selection",
    "skbilevel.inspection",
    "skbilevel.objectives",
]

# numpydoc.validate codes that make a docstring unusable in the API reference:
# no docstring, parameters missing or unknown, an unknown section (its content
# is dropped from the rendered page).
_REQUIRED_CHECKS = {"GL06", "GL08", "PR01", "PR02"}


def _public_names():
    names = []
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            if not name.startswith("__"):
                names.append((module_name, name))
    return names


def _public_callables():
    return [
        (module_name, name)
        for module_name, name in _public_names()
        if callable(getattr(importlib.import_module(module_name), name))
    ]


def _is_namedtuple(obj):
    return (
        inspect.isclass(obj)
        and issubclass(obj, tuple)
        and isinstance(getattr(obj, "_fields", None), tuple)
    )


def _section_entries(docstring, section):
    """Names listed in a numpydoc section (``a, b : type`` lines count twice)."""
    lines = inspect.cleandoc(docstring or "").splitlines()
    names = set()
    for i, line in enumerate(lines[:-1]):
        if line.strip() != section or not re.fullmatch(r"-{3,}", lines[i + 1].strip()):
            continue
        indent = len(line) - len(line.lstrip())
        for entry in lines[i + 2 :]:
            if not entry.strip():
                continue
            entry_indent = len(entry) - len(entry.lstrip())
            if entry_indent < indent:
                break
            if entry_indent > indent:
                continue  # a description line
            if re.fullmatch(r"-{3,}", entry.strip()):
                break  # the underline of the next section
            head = entry.strip().split(" : ")[0]
            names.update(part.strip() for part in head.split(","))
        names.discard("")
    return names


def _parameter_names(obj):
    """Parameters a docstring must document, as numpydoc spells them."""
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return []
    names = []
    for parameter in signature.parameters.values():
        if parameter.name in ("self", "cls"):
            continue
        prefix = {
            inspect.Parameter.VAR_POSITIONAL: "*",
            inspect.Parameter.VAR_KEYWORD: "**",
        }.get(parameter.kind, "")
        names.append(prefix + parameter.name)
    return names


def _docstring_problems(module_name, name):
    obj = getattr(importlib.import_module(module_name), name)
    docstring = inspect.getdoc(obj)
    if not docstring:
        return ["no docstring"]
    if _is_namedtuple(obj):
        # A result type: its fields are documented as Attributes.
        documented = _section_entries(docstring, "Attributes") | _section_entries(
            docstring, "Parameters"
        )
        missing = [field for field in obj._fields if field not in documented]
        return [f"fields not documented (Attributes): {missing}"] if missing else []
    try:
        from numpydoc.validate import validate
    except ImportError:
        documented = _section_entries(docstring, "Parameters")
        missing = [
            parameter
            for parameter in _parameter_names(obj)
            if parameter not in documented and parameter.lstrip("*") not in documented
        ]
        return [f"parameters not documented: {missing}"] if missing else []
    result = validate(f"{module_name}.{name}")
    return [
        f"{code}: {message}"
        for code, message in result["errors"]
        if code in _REQUIRED_CHECKS
    ]


@pytest.mark.parametrize(
    "module_name, name", _public_callables(), ids=lambda value: str(value)
)
def test_public_docstring_documents_its_parameters(module_name, name):
    problems = _docstring_problems(module_name, name)
    assert not problems, f"{module_name}.{name}: " + "; ".join(problems)


def _estimator_methods():
    import skbilevel

    methods = []
    for name in skbilevel.__all__:
        cls = getattr(skbilevel, name)
        if not inspect.isclass(cls):
            continue
        for attribute, value in vars(cls).items():
            if attribute.startswith("_") or not inspect.isfunction(value):
                continue
            methods.append((f"{name}.{attribute}", value))
    return methods


@pytest.mark.parametrize(
    "qualname, method", _estimator_methods(), ids=lambda value: str(value)
)
def test_estimator_methods_document_their_parameters(qualname, method):
    docstring = inspect.getdoc(method)
    assert docstring, f"skbilevel.{qualname} has no docstring"
    documented = _section_entries(docstring, "Parameters")
    missing = [
        parameter
        for parameter in _parameter_names(method)
        if parameter not in documented and parameter.lstrip("*") not in documented
    ]
    assert not missing, f"skbilevel.{qualname}: parameters not documented: {missing}"


def _api_reference():
    """(objects documented by autosummary, (module, name) of py:data entries)."""
    objects, data = set(), set()
    module_name = None
    in_autosummary = False
    for line in (DOC / "api.rst").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith(" "):
            in_autosummary = line.startswith(".. autosummary::")
        if match := re.match(r"\.\. currentmodule:: (\S+)", line):
            module_name = match.group(1)
        elif match := re.match(r"\.\. py:data:: (\S+)", line):
            data.add((module_name, match.group(1)))
        elif in_autosummary and line.startswith(" "):
            entry = line.strip()
            if entry and not entry.startswith(":"):
                module = importlib.import_module(module_name)
                objects.add(id(getattr(module, entry)))
    return objects, data


def test_api_reference_lists_every_public_name():
    objects, data = _api_reference()
    missing = [
        f"{module_name}.{name}"
        for module_name, name in _public_names()
        if id(getattr(importlib.import_module(module_name), name)) not in objects
        and (module_name, name) not in data
    ]
    assert not missing, f"add to doc/api.rst: {missing}"


def _has_gallery_title(path):
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    lines = [line.rstrip() for line in (docstring or "").strip().splitlines()]
    if len(lines) < 2 or not lines[0]:
        return False
    return bool(re.fullmatch(r"([=\-~^\"'`#*+])\1*", lines[1])) and len(
        lines[1]
    ) >= len(lines[0])


@pytest.mark.parametrize(
    "path",
    sorted(p for p in EXAMPLES.glob("*.py") if not p.name.startswith("_")),
    ids=lambda p: p.name,
)
def test_example_has_gallery_title(path):
    # sphinx-gallery makes the docstring's reST title the page title; without
    # one doc/conf.py leaves the example out of the gallery.
    assert _has_gallery_title(path), (
        f"examples/{path.name}: the module docstring must start with a title "
        "line underlined with '=' (sphinx-gallery page title)."
    )


@pytest.mark.slow
def test_sphinx_build_has_no_warnings(tmp_path):
    for module in ("sphinx", "numpydoc", "sphinx_gallery", "pydata_sphinx_theme"):
        pytest.importorskip(module)
    env = {k: v for k, v in os.environ.items() if k != "SKBILEVEL_DOC_PLOT"}
    command = [
        sys.executable,
        "-m",
        "sphinx",
        "-W",
        "--keep-going",
        "-b",
        "html",
        "-D",
        "plot_gallery=0",
        "-d",
        str(tmp_path / "doctrees"),
        str(DOC),
        str(tmp_path / "html"),
    ]
    result = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200
    )
    output = result.stdout[-4000:] + result.stderr[-8000:]
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{output}"
    assert (tmp_path / "html" / "index.html").exists()
    assert (tmp_path / "html" / "auto_examples" / "index.html").exists()
