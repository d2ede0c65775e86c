"""MusicGen web demo, batched: a fixed melody model; queued requests are generated together.

    python app_batched.py [--listen 0.0.0.0] [--server_port 7860] [--share] [--max-batch-size 12]

Needs the ``app`` extra: pip install 'audiocraft[app]'. See docs/APPS.md.
"""
import sys

from audiocraft.app.launch import main_batched

if __name__ == "__main__":
    sys.exit(main_batched())
