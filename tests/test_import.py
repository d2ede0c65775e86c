"""`import audiocraft` stays light: no heavy optional dependency is loaded, and it is quick once torch is in."""
import json
import subprocess
import sys
from pathlib import Path

HEAVY = ('transformers', 'gradio', 'demucs', 'xformers', 'torchaudio')

_PROBE = """
import json, sys, time
import torch  # allowed: audiocraft is a torch library; its own import cost is what we measure
start = time.perf_counter()
import audiocraft
elapsed = time.perf_counter() - start
print(json.dumps({'elapsed': elapsed, 'loaded': sorted(m for m in sys.modules if m.split('.')[0] in %r)}))
""" % (HEAVY,)


def _probe() -> dict:
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, '-c', _PROBE], cwd=root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_is_light():
    result = _probe()
    assert result['loaded'] == [], f"import audiocraft loaded heavy modules: {result['loaded']}"
    assert result['elapsed'] < 1.0, f"import audiocraft took {result['elapsed']:.2f} s after torch (limit 1 s)"


# utils/ holds small generic helpers: it may use the backends (speed code) but nothing above it.
_ABOVE_UTILS = ('models', 'app', 'train', 'convert', 'cli', 'cli_decoder', 'cli_plan', 'cli_runner', 'modules',
                'quantization', 'data')


def _imported_packages(path: Path):
    import ast
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            parts = (node.module or '').split('.')
            if node.level == 2:  # from ..x import y
                yield parts[0] if parts[0] else None, [a.name for a in node.names]
            elif node.level == 0 and parts[0] == 'audiocraft' and len(parts) > 1:
                yield parts[1], []
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split('.')
                if parts[0] == 'audiocraft' and len(parts) > 1:
                    yield parts[1], []


def test_utils_imports_nothing_above_it():
    utils = Path(__file__).resolve().parents[1] / 'audiocraft' / 'utils'
    offenders = []
    for path in sorted(utils.rglob('*.py')):
        for package, names in _imported_packages(path):
            targets = [package] if package else names
            offenders += [f"{path.name}: {t}" for t in targets if t in _ABOVE_UTILS]
    assert offenders == [], f"audiocraft/utils imports from higher layers: {offenders}"
