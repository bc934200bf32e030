"""Small COCO-format files written by the tests: COCO-Stuff's stuff annotations with RLE
masks, and the files of other kinds that users hand the loader by mistake."""

import json

import numpy as np
from pycocotools import mask as mask_utils

H, W = 20, 30


def rle(mask: np.ndarray) -> dict:
    encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in encoded["size"]], "counts": encoded["counts"].decode()}


def stuff_file(tmp_path, name: str = "stuff_val2017.json"):
    """Three images: 1 has clouds and sky-other (overlapping), 2 sky-other only, 3 no sky."""
    clouds = np.zeros((H, W), bool)
    clouds[:5, :] = True  # 150 pixels
    sky_other = np.zeros((H, W), bool)
    sky_other[3:8, :10] = True  # 50 pixels, 20 of them also clouds
    sky_only = np.zeros((H, W), bool)
    sky_only[:15, :] = True  # 450 pixels
    grass = ~sky_only
    annotations = []
    for k, (image_id, category, mask) in enumerate([
            (1, 106, clouds), (1, 157, sky_other), (1, 123, ~(clouds | sky_other)),
            (2, 157, sky_only), (2, 123, grass), (3, 123, np.ones((H, W), bool))]):
        annotations.append({"id": k + 1, "image_id": image_id, "category_id": category,
                            "segmentation": rle(mask), "area": int(mask.sum()),
                            "bbox": [0, 0, W, H], "iscrowd": 0})
    data = {
        "images": [{"id": i, "file_name": f"{i:012d}.png", "height": H, "width": W}
                   for i in (1, 2, 3)],
        "categories": [{"id": 106, "name": "clouds", "supercategory": "sky"},
                       {"id": 157, "name": "sky-other", "supercategory": "sky"},
                       {"id": 123, "name": "grass", "supercategory": "plant"}],
        "annotations": annotations,
    }
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path, clouds | sky_other


def instances_file(tmp_path):
    """COCO's instances format: thing categories 1-90 (person, ...), polygon masks."""
    path = tmp_path / "instances_train2017.json"
    path.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "000000000001.jpg", "height": H, "width": W}],
        "categories": [{"id": 1, "name": "person", "supercategory": "person"},
                       {"id": 90, "name": "toothbrush", "supercategory": "indoor"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 4.0,
                         "bbox": [0, 0, 2, 2], "segmentation": [[0, 0, 2, 0, 2, 2, 0, 2]]}]}))
    return path


def panoptic_file(tmp_path):
    """COCO's panoptic format: one PNG of segments per image; sky is 'sky-other-merged'."""
    path = tmp_path / "panoptic_train2017.json"
    path.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "000000000001.jpg", "height": H, "width": W}],
        "categories": [{"id": 187, "name": "sky-other-merged", "supercategory": "sky",
                        "isthing": 0, "color": [1, 2, 3]}],
        "annotations": [{"image_id": 1, "file_name": "000000000001.png",
                         "segments_info": [{"id": 1, "category_id": 187, "area": 10,
                                            "bbox": [0, 0, 5, 2], "iscrowd": 0}]}]}))
    return path
