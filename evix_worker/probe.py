"""`python -m evix_worker.probe`: prints the version of the Nix C API that nixffi is linked
against, or on stderr one line saying why it cannot be loaded (exit 1).

Run in a subprocess by `evix --version`, so the client itself never loads Nix.
"""

from __future__ import annotations

import sys


def main() -> int:
    try:
        import nixffi
    except ImportError as e:  # NixUnavailableError: its message says how to get the C API
        print(" ".join(str(e).split()), file=sys.stderr)
        return 1
    print(nixffi.nix_version())
    return 0


if __name__ == "__main__":
    sys.exit(main())
