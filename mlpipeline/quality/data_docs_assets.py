"""The stylesheets and scripts of the Data Docs pages, served by the project instead of CDNs.

GX's page templates load Bootstrap, jQuery, bootstrap-table, Vega, Font Awesome and a logo from
public CDNs, so offline (or behind a proxy) a validation page is unstyled and the index, drawn by
bootstrap-table, lists nothing. Setup (`mlpipeline data-docs-assets`, run by `make install` and
the image build) downloads the same files from the npm registry, each package checked against its
pinned SHA-512, into an asset folder; every Data Docs build copies them into the site's
`static/vendor/` and rewrites the CDN URLs of the pages it wrote to them (relative, so the pages
work from the local folder, the object store mirror and the scoring API's /reports alike).
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import re
import shutil
import sys
import tarfile
import urllib.request
from pathlib import Path

log = logging.getLogger(__name__)

REGISTRY = "https://registry.npmjs.org"

# npm package, version → SHA-512 of its tarball (the registry's `dist.integrity`).
PACKAGES: dict[tuple[str, str], str] = {
    (
        "bootstrap",
        "4.3.1",
    ): "rXqOmH1VilAt2DyPzluTi2blhk17bO7ef+zLLPlWvG494pDxcM234pJ8wTc/6R40UWizAIIMgxjvxZg5kmsbag==",
    (
        "bootstrap-table",
        "1.19.1",
    ): "WvV+l1AI/C+zThaKmfHmi/IuayVNB0qdFyEhFx1jyZhO0oLtNJNANkCR3rvJf6Dkh72dsLElxpE/bzK9seEQLA==",
    (
        "bootstrap-table",
        "1.19.0",
    ): "L+USHm3X9FKocx/6yngGu12yF6r6s1Ntuc+hoIK2a2QQJjHw5kcySLiE2HY/9sEaSGAOfPbfQOtBH3uKkcpqEA==",
    (
        "bootstrap-datepicker",
        "1.9.0",
    ): "9rYYbaVOheGYxjOr/+bJCmRPihfy+LkLSg4fIFMT9Od8WwWB/MB50w0JO1eBgKUMbb7PFHQD5uAfI3ArAxZRXA==",
    (
        "@forevolve/bootstrap-dark",
        "1.1.0",
    ): "A3ucpEpxPoTVO490lZZCfjPXxv832l7mm1IxX3bXyxvgwnPGXDLyh7dWrphXKO8YBAu3EswbBEu3VSW8NRMW3A==",
    (
        "vega",
        "5.33.1",
    ): "1fArfVDUqVbb5z8n+/nVQb+VNBzx8svY6CrsyTK4Ujm4yrd9I1auoKxBAPXLCavY1LcrbHUskQbGUP8gXOzyQw==",
    (
        "vega-lite",
        "5.23.0",
    ): "l4J6+AWE3DIjvovEoHl2LdtCUkfm4zs8Xxx7INwZEAv+XVb6kR6vIN1gt3t2gN2gs/y4DYTs/RPoTeYAuEg6mA==",
    (
        "vega-embed",
        "6.29.0",
    ): "PmlshTLtLFLgWtF/b23T1OwX53AugJ9RZ3qPE2c01VFAbgt3/GSNI/etzA/GzdrkceXFma+FDHNXUppKuM0U6Q==",
    (
        "@fortawesome/fontawesome-free",
        "6.6.0",
    ): "60G28ke/sXdtS9KZCpZSHHkCbdsOGEhIUGlwq6yhY74UpTiToIh8np7A8yphhM4BWsvNFtIvLpi4co+h9Mr9Ow==",
    (
        "jquery",
        "3.7.1",
    ): "m4avr8yL8kmFN8psrbFFFmB/If14iN5o9nw/NgnnM+kybDJpRsAynV2BsfpTYrTRysYUdADVD7CkUUizgkpLfg==",
    (
        "popper.js",
        "1.12.9",
    ): "s0EEi9xiSCdqz9lV4IiVH5yIZnDX/U1t0tCjB+0jXx9jW8lrR7kOpVupiUg175ogqVoudpDXHF1p6dKATCHMeg==",
}

# What GX's templates load → (package, version, file in the package). The CDNs serve these
# files from the same releases.
CDN: dict[str, tuple[str, str, str]] = {
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": (
        "bootstrap", "4.3.1", "dist/css/bootstrap.min.css"),
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": (
        "bootstrap", "4.3.1", "dist/js/bootstrap.min.js"),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": (
        "bootstrap-table", "1.19.1", "dist/bootstrap-table.min.css"),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": (
        "bootstrap-table", "1.19.1", "dist/bootstrap-table.min.js"),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js": (
        "bootstrap-table", "1.19.1", "dist/extensions/filter-control/bootstrap-table-filter-control.min.js"),
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css": (
        "bootstrap-table", "1.19.0", "dist/extensions/filter-control/bootstrap-table-filter-control.css"),
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css": (
        "bootstrap-table", "1.19.0", "dist/extensions/filter-control/bootstrap-table-filter-control.min.css"),
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css": (
        "bootstrap-datepicker", "1.9.0", "dist/css/bootstrap-datepicker.min.css"),
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js": (
        "bootstrap-datepicker", "1.9.0", "dist/js/bootstrap-datepicker.min.js"),
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css": (
        "@forevolve/bootstrap-dark", "1.1.0", "dist/css/bootstrap-prefers-dark.css"),
    "https://cdn.jsdelivr.net/npm/vega@5": ("vega", "5.33.1", "build/vega.min.js"),
    "https://cdn.jsdelivr.net/npm/vega-lite@5": ("vega-lite", "5.23.0", "build/vega-lite.min.js"),
    "https://cdn.jsdelivr.net/npm/vega-embed@6": ("vega-embed", "6.29.0", "build/vega-embed.min.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": (
        "@fortawesome/fontawesome-free", "6.6.0", "css/all.min.css"),
    "https://code.jquery.com/jquery-3.7.1.min.js": ("jquery", "3.7.1", "dist/jquery.min.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": (
        "popper.js", "1.12.9", "dist/umd/popper.min.js"),
}  # fmt: skip

# Font Awesome's stylesheet loads its fonts from ../webfonts/.
EXTRA_FOLDERS = {("@fortawesome/fontawesome-free", "6.6.0"): "webfonts/"}
_LOGO = re.compile(r"https://great-expectations-web-assets\.s3\.[^\"']*/logo-long\.png[^\"']*")
# GX's own static files, linked with a fixed depth that is one short for validation pages.
_SITE_STATIC = re.compile(r'((?:src|href)=")(?:\./|(?:\.\./)+)static/')
_SRI = re.compile(r'\s+(?:integrity="[^"]*"|crossorigin="[^"]*")')
VENDOR = "static/vendor"


def default_folder() -> Path:
    """Where setup puts the assets: beside the environment's interpreter, so a fresh `.venv`
    (or image) gets them with its packages and nothing is fetched at run time."""
    return Path(sys.prefix) / "share" / "mlpipeline-data-docs-assets"


def _folder(package: str, version: str) -> str:
    return f"{package.replace('/', '__')}@{version}"


def local_path(url: str) -> str | None:
    """The file under `static/vendor/` that replaces a CDN URL (None: not one of ours)."""
    found = CDN.get(url)
    return f"{_folder(found[0], found[1])}/{found[2]}" if found else None


def _wanted(package: str, version: str) -> list[str]:
    files = [path for pkg, ver, path in CDN.values() if (pkg, ver) == (package, version)]
    return (
        files + [EXTRA_FOLDERS[(package, version)]]
        if (package, version) in EXTRA_FOLDERS
        else files
    )


def download(folder: Path | None = None) -> Path:
    """Fetch every package from the npm registry, check it, keep the files the pages use.
    Already complete folders are kept: safe and quick to re-run."""
    folder = folder or default_folder()
    for (package, version), integrity in PACKAGES.items():
        target = folder / _folder(package, version)
        if (target / ".complete").exists():
            continue
        name = package.rsplit("/", 1)[-1]
        url = f"{REGISTRY}/{package}/-/{name}-{version}.tgz"
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                data = response.read()
        except OSError as exc:
            raise RuntimeError(
                f"cannot download {url}: {exc}. The Data Docs assets come from the npm registry "
                "at setup; set https_proxy if needed, then run `mlpipeline data-docs-assets`"
            ) from exc
        digest = base64.b64encode(hashlib.sha512(data).digest()).decode()
        if digest != integrity:
            raise RuntimeError(f"{url}: SHA-512 {digest} is not the pinned {integrity}")
        shutil.rmtree(target, ignore_errors=True)
        wanted = _wanted(package, version)
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            for member in archive.getmembers():
                inside = member.name.split("/", 1)[-1]
                if member.isfile() and any(
                    inside == w or (w.endswith("/") and inside.startswith(w)) for w in wanted
                ):
                    path = target / inside
                    path.parent.mkdir(parents=True, exist_ok=True)
                    extracted = archive.extractfile(member)
                    assert extracted is not None
                    path.write_bytes(extracted.read())
        missing = [w for w in wanted if not (target / w).exists()]
        if missing:
            raise RuntimeError(f"{url} lacks {missing}")
        (target / ".complete").touch()
        log.info("Data Docs assets: %s@%s", package, version)
    return folder


def available(folder: Path | None = None) -> bool:
    folder = folder or default_folder()
    return all((folder / _folder(p, v) / ".complete").exists() for p, v in PACKAGES)


def install(site_root: Path, folder: Path | None = None) -> bool:
    """Copy the assets into a Data Docs site (`static/vendor/`); False when setup did not
    download them (the pages then keep the CDN links, and a warning says what to run)."""
    folder = folder or default_folder()
    if not available(folder):
        log.warning(
            "Data Docs assets are not installed in %s: the pages load their styles and scripts "
            "from CDNs (broken offline). Run `mlpipeline data-docs-assets` (make install does).",
            folder,
        )
        return False
    target = site_root / VENDOR
    if not (target / ".complete").exists():
        shutil.copytree(folder, target, dirs_exist_ok=True)
        (target / ".complete").touch()
    return True


def localize(html: str, prefix: str) -> str:
    """A rendered page with its CDN assets pointing at the site's `static/vendor/` copies;
    `prefix` leads from the page to the site's root (`./`, `../../`)."""
    for url in CDN:
        html = html.replace(url, f"{prefix}{VENDOR}/{local_path(url)}")
    html = _LOGO.sub(f"{prefix}static/images/logo-long.png", html)
    html = _SITE_STATIC.sub(lambda m: f"{m.group(1)}{prefix}static/", html)
    return _SRI.sub("", html)
