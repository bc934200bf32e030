"""COCO-Stuff in one call, end to end against an HTTP server on 127.0.0.1 that serves a small
COCO-Stuff tree written here (RLE masks, JPEG images), with the faults of a real network."""

import io
import json
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from f1lib.data.coco_download import DownloadError, download_coco_stuff, fetch
from f1lib.data.coco_stuff import STUFF_ZIP, CocoFormatError, CocoStuffSky

from coco_files import rle

H, W = 24, 32


def jpeg(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (H, W, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=90)
    return out.getvalue()


def stuff_json(image_ids: list[int], sky: dict[int, tuple[int, ...]]) -> bytes:
    """Images `image_ids`; image i has the sky categories sky[i] (clouds: the top rows,
    sky-other: the next ones), the rest grass."""
    annotations = []
    for i in image_ids:
        top = np.zeros((H, W), bool)
        for k, category in enumerate(sky.get(i, ())):
            mask = np.zeros((H, W), bool)
            mask[4 * k:4 * k + 4] = True
            top |= mask
            annotations.append({"image_id": i, "category_id": category, "segmentation": rle(mask)})
        annotations.append({"image_id": i, "category_id": 123, "segmentation": rle(~top)})
    for k, a in enumerate(annotations):
        a.update(id=k + 1, iscrowd=0, bbox=[0, 0, W, H], area=0)
    return json.dumps({
        "images": [{"id": i, "file_name": f"{i:012d}.jpg", "height": H, "width": W}
                   for i in image_ids],
        "categories": [{"id": 106, "name": "clouds", "supercategory": "sky"},
                       {"id": 157, "name": "sky-other", "supercategory": "sky"},
                       {"id": 123, "name": "grass", "supercategory": "plant"}],
        "annotations": annotations}).encode()


class Server:
    """Serves `files` (path -> bytes) with range requests, and scripted faults: paths in
    `cut_once` send half their bytes and hang up the first time; paths in `damaged_once`
    serve their first half as if it were the whole file the first time (as a broken cache
    would), paths in `damaged` always."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.requests = files, []
        self.cut_once, self.damaged_once, self.damaged = set(), set(), set()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                if self.path in server.damaged or self.path in server.damaged_once:
                    server.damaged_once.discard(self.path)
                    body = body[:len(body) // 2]
                start = int(self.headers["Range"][6:].rstrip("-")) if self.headers["Range"] else 0
                if start >= len(body) and start:
                    self.send_error(416)
                    return
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                if self.path in server.cut_once:
                    server.cut_once.discard(self.path)
                    self.wfile.write(body[start:start + (len(body) - start) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body[start:])

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/"
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.http.shutdown()
        self.http.server_close()


def coco_tree() -> dict[str, bytes]:
    """Train: images 1-4 (1 and 3 with both sky categories); val: 5-6 (6 with both)."""
    train = stuff_json([1, 2, 3, 4], {1: (106, 157), 2: (157,), 3: (157, 106)})
    val = stuff_json([5, 6], {6: (106, 157)})
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("annotations/stuff_train2017.json", train)
        z.writestr("annotations/stuff_val2017.json", val)
    files = {"/annotations/stuff_annotations_trainval2017.zip": archive.getvalue()}
    for split, ids in (("train", [1, 2, 3, 4]), ("val", [5, 6])):
        files.update({f"/images/{split}2017/{i:012d}.jpg": jpeg(i) for i in ids})
    return files


def download(server, folder):
    return download_coco_stuff(folder, annotations_url=server.url + "annotations/",
                               image_server=server.url + "images/")


def test_one_call_fetches_the_annotations_and_only_the_selections_images(tmp_path):
    with Server(coco_tree()) as server:
        download(server, tmp_path)
    assert sorted(p.name for p in (tmp_path / "train2017").iterdir()) == \
        ["000000000001.jpg", "000000000003.jpg"]  # both clouds and sky-other: 1 and 3, not 2
    assert [p.name for p in (tmp_path / "val2017").iterdir()] == ["000000000006.jpg"]
    assert (tmp_path / "train2017" / "000000000003.jpg").read_bytes() == \
        server.files["/images/train2017/000000000003.jpg"]
    sky = CocoStuffSky(tmp_path / "stuff_train2017.json", tmp_path / "train2017",
                       selection="both", size=(H, W))
    batch = sky.batch([0, 1])
    assert batch.fractions.tolist() == pytest.approx([8 / H, 8 / H])  # two bands of 4 rows
    assert not list(tmp_path.rglob("*.part"))


def test_a_second_call_fetches_nothing(tmp_path):
    with Server(coco_tree()) as server:
        download(server, tmp_path)
        first = len(server.requests)
        download(server, tmp_path)
    assert first == 4 and len(server.requests) == first  # the zip and three images, once


def test_an_interrupted_download_resumes_where_it_stopped(tmp_path):
    with Server(coco_tree()) as server:
        zip_path = "/annotations/stuff_annotations_trainval2017.zip"
        image = "/images/train2017/000000000001.jpg"
        server.cut_once |= {zip_path, image}
        download(server, tmp_path)
    asked = [r for p, r in server.requests if p == zip_path]
    half = len(server.files[zip_path]) // 2
    assert asked == [None, f"bytes={half}-"]  # the second request continues the first
    assert [r for p, r in server.requests if p == image][1].startswith("bytes=")
    assert (tmp_path / "train2017" / "000000000001.jpg").read_bytes() == server.files[image]


def test_a_part_left_by_a_killed_run_is_continued(tmp_path):
    body = bytes(range(256)) * 40
    with Server({"/f.bin": body}) as server:
        (tmp_path / "f.bin.part").write_bytes(body[:1000])
        fetch(server.url + "f.bin", tmp_path / "f.bin")
    assert (tmp_path / "f.bin").read_bytes() == body
    assert server.requests == [("/f.bin", "bytes=1000-")]


def test_a_damaged_image_is_fetched_again(tmp_path):
    with Server(coco_tree()) as server:
        image = "/images/val2017/000000000006.jpg"
        server.damaged_once.add(image)
        download(server, tmp_path)
    assert [p for p, _ in server.requests].count(image) == 2
    assert (tmp_path / "val2017" / "000000000006.jpg").read_bytes() == server.files[image]


def test_an_image_damaged_every_time_is_named_in_a_clear_error(tmp_path):
    with Server(coco_tree()) as server:
        server.damaged.add("/images/train2017/000000000003.jpg")
        with pytest.raises(CocoFormatError, match=r"000000000003\.jpg cannot be decoded.*twice"):
            download(server, tmp_path)
    assert not (tmp_path / "train2017" / "000000000003.jpg").exists()


def test_a_missing_file_and_a_damaged_zip_say_what_happened(tmp_path):
    with Server({}) as server:
        with pytest.raises(DownloadError, match="HTTP 404"):
            download(server, tmp_path)
    files = coco_tree()
    files["/annotations/stuff_annotations_trainval2017.zip"] = b"not a zip" * 100
    with Server(files) as server:
        with pytest.raises(CocoFormatError, match="not a whole zip file"):
            download(server, tmp_path)
    assert not (tmp_path / "stuff_annotations_trainval2017.zip").exists()  # fetched anew next


def test_an_extraction_stopped_midway_is_done_again_by_the_next_call(tmp_path, monkeypatch):
    import f1lib.data.coco_download as coco_download

    real_copy = coco_download.shutil.copyfileobj

    def stop_after_a_few_bytes(source, out, length=0):
        if "stuff_val2017" not in str(getattr(out, "name", "")):  # stop in the last file
            return real_copy(source, out, length)
        out.write(source.read(10))
        raise KeyboardInterrupt  # as Ctrl-C midway through the extraction

    with Server(coco_tree()) as server:
        monkeypatch.setattr(coco_download.shutil, "copyfileobj", stop_after_a_few_bytes)
        with pytest.raises(KeyboardInterrupt):
            download(server, tmp_path)
        monkeypatch.setattr(coco_download.shutil, "copyfileobj", real_copy)
        zips = [p for p, _ in server.requests].count("/annotations/" + STUFF_ZIP)
        download(server, tmp_path)  # no partial stuff_val2017.json was taken as whole
    assert CocoStuffSky(tmp_path / "stuff_val2017.json", selection="both").image_ids == [6]
    assert [p for p, _ in server.requests].count("/annotations/" + STUFF_ZIP) == zips  # reused
