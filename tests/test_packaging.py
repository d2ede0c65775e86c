"""Packaging: what `pip install` of this package asks of an environment (requirements.txt, setup.py's extras).

Upper bounds make pip downgrade what an environment already has (transformers 5, huggingface_hub 1.x / 2.x, a
Colab image's gradio), so requirements carry lower bounds only, unless a comment on the same line names the
failing case that needs the bound. The Python and torch versions declared agree with each other.
"""
from pathlib import Path
import re

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]
CAPPING = ("<", "<=", "==", "~=", "===")


def _requirement_lines() -> list:
    """(requirement, comment) of each requirement line of requirements.txt."""
    found = []
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        text, _, comment = line.partition("#")
        if text.strip():
            found.append((Requirement(text.strip()), comment.strip()))
    return found


def _setup_kwargs(monkeypatch) -> dict:
    """The arguments setup.py passes to setuptools.setup (setup.py run with setup() recording them)."""
    import runpy

    import setuptools
    recorded: dict = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: recorded.update(kwargs))
    runpy.run_path(str(ROOT / "setup.py"))
    return recorded


def test_requirements_have_no_upper_bound_without_a_named_failing_case(monkeypatch):
    capped = [f"{req} ({comment or 'no comment'})" for req, comment in _requirement_lines()
              if any(spec.operator in CAPPING for spec in req.specifier) and "fail" not in comment.lower()]
    assert capped == []
    kwargs = _setup_kwargs(monkeypatch)
    assert kwargs["install_requires"] == [str(req) for req, _ in _requirement_lines()]
    for extra, requirements in kwargs["extras_require"].items():
        capped = [r for r in requirements if any(s.operator in CAPPING for s in Requirement(r).specifier)]
        assert capped == [], f"extra [{extra}] caps {capped}"


def test_the_newest_majors_are_accepted(monkeypatch):
    """transformers 4.x and 5.x, huggingface_hub 0.x to 2.x, gradio 6.x: the versions CI tests."""
    requirements = {req.name: req.specifier for req, _ in _requirement_lines()}
    app = _setup_kwargs(monkeypatch)["extras_require"]["app"]
    requirements.update({Requirement(r).name: Requirement(r).specifier for r in app})
    for name, versions in [("transformers", ["4.57.6", "5.25.0"]), ("huggingface_hub", ["0.36.2", "1.33.0", "2.4.0"]),
                           ("gradio", ["6.17.3", "6.31.0"]), ("torch", ["2.13.0"])]:
        assert all(requirements[name].contains(v) for v in versions), (name, requirements[name])


def test_python_and_torch_versions_agree(monkeypatch):
    """setup.py, requirements.txt and the README declare the same Python and torch versions, which admit the
    tested CPython 3.11 and torch 2.13.0 (and no Python 3.9, which torch 2.13 does not support)."""
    python = SpecifierSet(_setup_kwargs(monkeypatch)["python_requires"])
    assert python.contains("3.11") and not python.contains("3.9")
    torch = {req.name: req.specifier for req, _ in _requirement_lines()}["torch"]
    assert torch.contains("2.13.0")
    readme = (ROOT / "README.md").read_text()
    install = readme[readme.index("## Install"):readme.index("### CPU kernels")]
    assert re.search(r"Python 3\.10 or newer, PyTorch 2\.6 or newer", install)
    assert python == SpecifierSet(">=3.10") and torch == SpecifierSet(">=2.6")
