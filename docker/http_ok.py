"""Healthcheck for the project image (no curl in it): exit 0 when the URL answers 2xx."""

from __future__ import annotations

import sys
import urllib.request


def main() -> None:
    url = sys.argv[1]
    try:
        with urllib.request.urlopen(url, timeout=5):  # noqa: S310 - a fixed local URL
            pass
    except OSError as exc:  # URLError and HTTPError (non-2xx) are OSErrors
        sys.exit(f"{url}: {exc}")


if __name__ == "__main__":
    main()
