"""COCO-Stuff's sky in one call: the stuff annotations, then only the images a selection needs.

`download_coco_stuff(folder)` fetches stuff_annotations_trainval2017.zip (about 401 MB),
unpacks its two JSON files, and fetches the train and val images of the selection one by one
from COCO's image server (for "both", 3,654 + 92 of the 123,287), not the 19 GB of image
zips. It is resumable: a file is written as <name>.part and renamed when complete, an
interrupted one continues where it stopped (an HTTP range request), and what is already there
is skipped. Each file is checked: its size against the server's, and each image that it
decodes; a damaged image is fetched once more, then named in an error.
"""

from __future__ import annotations

import http.client
import os
import shutil
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from .coco_stuff import STUFF_ZIP, CocoFormatError, CocoStuffSky, read_image

ANNOTATIONS_URL = "http://images.cocodataset.org/annotations/"
IMAGE_SERVER = "http://images.cocodataset.org/"  # <split>2017/<file_name>, one image a request
CHUNK = 1 << 20
ATTEMPTS = 4  # requests per file before an error: each continues the last one's bytes


class DownloadError(OSError):
    """A file that could not be fetched whole; the message names it and its address."""


def _total(response, offset: int) -> int | None:
    """The whole file's size from a response to a request from `offset`, when it says."""
    content_range = response.headers.get("Content-Range")  # bytes 100-199/200
    if content_range and "/" in content_range and not content_range.endswith("*"):
        return int(content_range.rsplit("/", 1)[1])
    length = response.headers.get("Content-Length")
    return None if length is None else offset + int(length)


def fetch(url: str, destination: Path, timeout: float = 60.0) -> Path:
    """`url` into `destination`, through `destination`.part, resuming what an earlier call
    left there; checked against the size the server announces. Returns `destination`."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    part = destination.with_name(destination.name + ".part")
    problem = "no attempt"
    for _ in range(ATTEMPTS):
        offset = part.stat().st_size if part.exists() else 0
        request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset
                                         else {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                if offset and response.status != 206:  # the server ignored the range
                    offset = 0
                total = _total(response, offset)
                with open(part, "ab" if offset else "wb") as file:
                    shutil.copyfileobj(response, file, CHUNK)
        except urllib.error.HTTPError as err:
            if err.code == 416:  # nothing after `offset`: a stale part, start over
                part.unlink(missing_ok=True)
                problem = "the server refused the resumed range"
                continue
            raise DownloadError(f"{url}: HTTP {err.code} {err.reason}") from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
            # dropped mid-file: the next request resumes
            problem = f"interrupted ({err})"
            continue
        size = part.stat().st_size
        if total is None or size == total:
            os.replace(part, destination)
            return destination
        problem = f"{size:,} of {total:,} bytes arrived"
        if size > total:
            part.unlink()
    raise DownloadError(f"could not fetch {url} into {destination} in {ATTEMPTS} requests: "
                        f"{problem}; run again to resume from {part}")


def fetch_image(url: str, destination: Path) -> Path:
    """An image, fetched (or kept, if already there) and decoded to check it; a damaged one
    is fetched once more, then reported with its path and address."""
    for _ in range(2):
        if not destination.exists():
            fetch(url, destination)
        try:
            read_image(destination)
            return destination
        except CocoFormatError as err:
            destination.unlink()
            problem = err
    raise CocoFormatError(f"{problem}; fetched twice from {url}") from None


def _unpack_annotations(folder: Path, splits: tuple[str, ...], annotations_url: str) -> None:
    wanted = [f"stuff_{split}2017.json" for split in splits]
    if all((folder / name).is_file() for name in wanted):
        return
    archive = folder / STUFF_ZIP  # fetch renames only a whole file: one here is complete
    if not archive.is_file():
        fetch(annotations_url + STUFF_ZIP, archive)
    try:
        with zipfile.ZipFile(archive) as zipped:
            members = {Path(m).name: m for m in zipped.namelist()}
            missing = [name for name in wanted if name not in members]
            if missing:
                raise CocoFormatError(f"{archive} holds no {', '.join(missing)}")
            for name in wanted:  # through a .part file: a killed extraction is not taken whole
                part = folder / f"{name}.part"
                with zipped.open(members[name]) as source, open(part, "wb") as out:
                    shutil.copyfileobj(source, out, CHUNK)
                os.replace(part, folder / name)
    except zipfile.BadZipFile as err:
        archive.unlink()
        raise CocoFormatError(f"{archive} is not a whole zip file ({err}); it was deleted: "
                              "run again to fetch it anew") from None


def download_coco_stuff(folder: str | os.PathLike, selection: str = "both",
                        splits: tuple[str, ...] = ("train", "val"),
                        annotations_url: str = ANNOTATIONS_URL,
                        image_server: str = IMAGE_SERVER, images: bool = True) -> Path:
    """COCO-Stuff's stuff annotations and (with `images`) the images of `selection` into
    `folder` (stuff_<split>2017.json, <split>2017/), as `f1lib.data.sky.sky_datasets` reads
    them. Resumable and idempotent; a progress bar counts the images. Returns `folder`."""
    from ..progress import progress_bar

    folder = Path(folder)
    if folder.is_file():
        raise NotADirectoryError(f"{folder} is a file; download_coco_stuff needs a folder")
    folder.mkdir(parents=True, exist_ok=True)
    _unpack_annotations(folder, tuple(splits), annotations_url)
    if not images:
        return folder
    wanted = []
    for split in splits:
        sky = CocoStuffSky(folder / f"stuff_{split}2017.json", selection=selection)
        names = [sky.coco.imgs[i]["file_name"] for i in sky.image_ids]
        wanted += [(f"{image_server}{split}2017/{name}", folder / f"{split}2017" / name)
                   for name in names]
    for url, destination in progress_bar(wanted, desc="COCO-Stuff images"):
        if not destination.exists():
            fetch_image(url, destination)
    return folder
