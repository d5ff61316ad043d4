"""scan_image_folder: layouts, the service's limits, and every bad-input case listed before any upload."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from cvtriton_core.adapters.customvision_types import plan_batches
from cvtriton_core.errors import UserError
from cvtriton_core.image_folder import MAX_TRAINING_IMAGE_BYTES, scan_image_folder

from .conftest import write_image


def test_classification_folder_gives_tags_counts_and_digests(make_classification_folder):
    root = make_classification_folder({"red": 6, "green": 5})
    plan = scan_image_folder(root)
    assert plan.ok, plan.problems
    assert plan.task == "Classification-Multiclass"
    assert plan.tags == {"green": 5, "red": 6}
    assert len(plan.images) == 11
    assert len({i.digest for i in plan.images}) == 11
    red = next(i for i in plan.images if i.name == "red/red_000.jpg")
    assert red.tags == ("red",) and red.regions == () and (red.width, red.height) == (300, 260)
    assert red.size == (root / "red" / "red_000.jpg").stat().st_size


def test_detection_folder_reads_regions_csv(make_detection_folder):
    root = make_detection_folder({"can": 15, "box": 16})
    plan = scan_image_folder(root)
    assert plan.ok, plan.problems
    assert plan.task == "ObjectDetection"
    assert plan.tags == {"box": 16, "can": 15}
    image = next(i for i in plan.images if i.name == "shelf/can_001.jpg")
    assert image.tags == () and len(image.regions) == 1
    assert image.regions[0].tag == "can" and image.regions[0].width == pytest.approx(0.4)
    assert image.tag_names == ("can",)


def test_empty_and_missing_folders_are_problems(tmp_path):
    (tmp_path / "empty").mkdir()
    plan = scan_image_folder(tmp_path / "empty")
    assert not plan.ok and "no images found" in plan.problems[0]
    missing = scan_image_folder(tmp_path / "nope")
    assert "does not exist" in missing.problems[0]
    with pytest.raises(UserError) as err:
        missing.raise_for_problems()
    assert err.value.exit_code == 2 and "\n" not in str(err.value) and " — " in str(err.value)


def test_tag_with_too_few_images_and_single_tag(make_classification_folder):
    plan = scan_image_folder(make_classification_folder({"red": 6, "green": 3}))
    assert any("tag 'green' has 3 images" in p and "add 2 more" in p for p in plan.problems)
    single = scan_image_folder(make_classification_folder({"red": 6}, name="single"))
    assert any("at least 2 tags" in p for p in single.problems)


def test_non_image_and_damaged_files_are_named(make_classification_folder):
    root = make_classification_folder({"red": 6, "green": 6})
    (root / "red" / "notes.txt").write_text("not an image")
    good = (root / "green" / "green_000.jpg").read_bytes()
    (root / "green" / "broken.jpg").write_bytes(good[: len(good) // 2])        # truncated JPEG
    (root / "green" / "fake.png").write_bytes(b"this is text, not a png")
    problems = scan_image_folder(root).problems
    assert any(p.startswith("red/notes.txt is not an image file") for p in problems)
    assert any(p.startswith("green/broken.jpg is damaged") for p in problems)
    assert any(p.startswith("green/fake.png is not a readable image") for p in problems)


def test_unsupported_format_oversize_and_extreme_dimensions(make_classification_folder):
    root = make_classification_folder({"red": 6, "green": 6})
    buf = io.BytesIO()
    Image.new("RGB", (300, 300), (1, 2, 3)).save(buf, "TIFF")
    (root / "red" / "scan.jpg").write_bytes(buf.getvalue())                     # a TIFF named .jpg
    big = write_image(root / "red" / "huge.jpg", (9, 9, 9))
    big.write_bytes(big.read_bytes() + b"\0" * (MAX_TRAINING_IMAGE_BYTES + 1))  # valid JPEG, 6 MB + 1 byte
    Image.new("L", (5200, 200)).save(root / "green" / "strip.png")              # aspect ratio 26:1
    problems = scan_image_folder(root).problems
    assert any("red/scan.jpg is a TIFF image" in p for p in problems)
    assert any(p.startswith("red/huge.jpg is 6.0 MB; training images may be at most 6 MB") for p in problems)
    assert any("green/strip.png is 5200x200 px" in p for p in problems)


def test_small_images_are_a_warning_not_a_problem(tmp_path):
    for tag, colour in (("a", (200, 0, 0)), ("b", (0, 0, 200))):
        for i in range(5):
            write_image(tmp_path / "f" / tag / f"{i}.png", tuple(c + i for c in colour), size=(64, 64), fmt="PNG")
    plan = scan_image_folder(tmp_path / "f")
    assert plan.ok
    assert any("10 image(s) are under 256 px" in w for w in plan.warnings)


def test_multilabel_merges_identical_files_multiclass_refuses_them(make_classification_folder):
    root = make_classification_folder({"red": 6, "green": 6})
    (root / "green" / "also_red.jpg").write_bytes((root / "red" / "red_000.jpg").read_bytes())
    multiclass = scan_image_folder(root)
    assert any("same image under two tags" in p for p in multiclass.problems)
    multilabel = scan_image_folder(root, "Classification-Multilabel")
    assert multilabel.ok, multilabel.problems
    merged = [i for i in multilabel.images if len(i.tags) > 1]
    assert len(merged) == 1 and merged[0].tags == ("green", "red")     # folders are read in name order
    assert multilabel.tags == {"green": 7, "red": 6} and len(multilabel.images) == 12


def test_detection_csv_errors(make_detection_folder):
    root = make_detection_folder({"can": 15})
    csv = root / "regions.csv"
    lines = csv.read_text().splitlines()
    lines += ["../outside.jpg,can,0.1,0.1,0.2,0.2", "shelf/missing.jpg,can,0.1,0.1,0.2,0.2",
              "shelf/can_000.jpg,can,0.9,0.1,0.2,0.2", "shelf/can_000.jpg,,0.1,0.1,0.2,0.2",
              "shelf/can_000.jpg,can,a,b,c,d", "shelf/can_000.jpg,box,0.1,0.1,0.2,0.2"]
    csv.write_text("\n".join(lines) + "\n")
    write_image(root / "shelf" / "unlisted.jpg", (1, 1, 1))
    plan = scan_image_folder(root)
    text = "\n".join(plan.problems)
    assert "is outside" in text and "shelf/missing.jpg, which does not exist" in text
    assert "is not inside 0..1" in text and "the tag is empty" in text and "must be numbers" in text
    assert "tag 'box' has 1 regions; training needs at least 15" in text
    assert any("1 image(s) have no rows in regions.csv" in w for w in plan.warnings)


def test_detection_needs_header_and_regions_file(make_detection_folder, tmp_path):
    root = make_detection_folder({"can": 15})
    (root / "regions.csv").write_text("file,label,x,y,w,h\n")
    assert "must start with the header" in scan_image_folder(root).problems[0]
    write_image(tmp_path / "plain" / "a.jpg", (5, 5, 5))
    assert "regions.csv not found" in scan_image_folder(tmp_path / "plain", "ObjectDetection").problems[0]


def test_unknown_task_is_a_problem(tmp_path: Path):
    assert "unknown project task" in scan_image_folder(tmp_path, "Detection").problems[0]


def test_plan_batches_respects_64_images_20_tags_and_bytes():
    items = [(f"i{n}", f"t{n % 3}", 10) for n in range(150)]
    batches = plan_batches(items, size_of=lambda i: i[2], tags_of=lambda i: [i[1]])
    assert [len(b) for b in batches] == [64, 64, 22]
    many_tags = [(f"i{n}", f"t{n}", 10) for n in range(45)]
    assert [len(b) for b in plan_batches(many_tags, size_of=lambda i: i[2], tags_of=lambda i: [i[1]])] == [20, 20, 5]
    heavy = plan_batches(items[:10], size_of=lambda i: 40, tags_of=lambda i: [i[1]], max_bytes=100)
    assert [len(b) for b in heavy] == [2, 2, 2, 2, 2]
    assert [x for b in batches for x in b] == items               # order kept, nothing lost


def test_detection_rows_naming_one_image_two_ways_are_merged(make_detection_folder):
    root = make_detection_folder({"can": 15})
    with (root / "regions.csv").open("a") as csv:
        csv.write("./shelf/can_000.jpg,can,0.5,0.5,0.2,0.2\nshelf\\can_000.jpg,can,0.6,0.6,0.1,0.1\n")
    plan = scan_image_folder(root)
    assert plan.ok, plan.problems
    (image,) = [i for i in plan.images if i.name == "shelf/can_000.jpg"]
    assert len(image.regions) == 3 and plan.tags == {"can": 17} and len(plan.images) == 15


def test_tags_differing_only_in_case_are_one_problem(tmp_path):
    from PIL import Image

    from cvtriton_core.image_folder import scan_image_folder

    for t, tag in enumerate(("Red", "red", "blue")):
        (tmp_path / tag).mkdir()
        for i in range(5):
            Image.new("RGB", (64, 64), (200 - i, 10 * t, 30)).save(tmp_path / tag / f"{tag}{i}.jpg")
    plan = scan_image_folder(tmp_path)
    case = [p for p in plan.problems if "letter case" in p]
    assert case == ["tags 'Red' and 'red' differ only in letter case; Custom Vision treats them as one tag — give "
                    "them one spelling"]
