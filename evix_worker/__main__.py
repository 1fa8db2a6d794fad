import sys

from .main import run_worker

sys.exit(run_worker())
