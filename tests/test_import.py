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
