"""Where the apps find the tiny offline checkpoints, and when the process must restart to use them."""
import sys
import types

import pytest

from audiocraft.app import settings
from tests.conftest import HF_CACHE_DIR


def test_offline_env_points_at_the_test_checkpoints(monkeypatch):
    monkeypatch.delenv(settings.CACHE_ENV, raising=False)
    env = settings.offline_env()
    assert env["HF_HUB_CACHE"] == str(HF_CACHE_DIR.resolve())
    assert (env["HF_HUB_OFFLINE"], env["TRANSFORMERS_OFFLINE"], env[settings.OFFLINE_ENV]) == ("1", "1", "1")
    assert set(settings.OFFLINE_MODELS) <= set(settings.MODELS)
    for name in settings.OFFLINE_MODELS:
        assert (HF_CACHE_DIR / f"models--{name.replace('/', '--')}").is_dir()


@pytest.mark.parametrize("value, expected", [("1", True), ("true", True), ("YES", True), ("0", False), ("", False)])
def test_offline_flag_from_environment(monkeypatch, value, expected):
    monkeypatch.setenv(settings.OFFLINE_ENV, value)
    assert settings.offline_demo_requested() is expected


def test_restart_only_when_the_hub_already_read_other_settings(monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", "/somewhere/else")
    env = {"HF_HUB_CACHE": "/tiny/cache"}
    monkeypatch.setitem(sys.modules, "huggingface_hub", types.ModuleType("huggingface_hub"))
    assert settings.needs_reexec(env)
    monkeypatch.setenv("HF_HUB_CACHE", "/tiny/cache")
    assert not settings.needs_reexec(env)  # already in place
    monkeypatch.setenv("HF_HUB_CACHE", "/somewhere/else")
    monkeypatch.delitem(sys.modules, "huggingface_hub")
    monkeypatch.delitem(sys.modules, "transformers", raising=False)
    assert not settings.needs_reexec(env)  # not imported yet: setting os.environ is enough


def test_importing_the_package_and_handlers_loads_no_gradio():
    import subprocess
    from pathlib import Path

    code = ("import sys, audiocraft, audiocraft.app, audiocraft.app.handlers, audiocraft.app.launch, "
            "audiocraft.app.outputs, audiocraft.app.waveform; "
            "print(sorted(m for m in ('gradio', 'transformers', 'PIL') if m in sys.modules))")
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
