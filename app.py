"""MusicGen web demo (gradio): text and melody to music in the browser.

    python app.py [--listen 0.0.0.0] [--server_port 7860] [--share] [--inbrowser]
    MUSICGEN_DEMO_OFFLINE=1 python app.py     # tiny offline test checkpoints (noise), nothing downloaded

Needs the ``app`` extra: pip install 'audiocraft[app]'. See docs/APPS.md.
"""
import sys

from audiocraft.app.launch import main

if __name__ == "__main__":
    sys.exit(main())
