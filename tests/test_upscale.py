"""`ablation upscale`: image kinds, names, alpha, ICC, errors, tiling memory, --compare."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from fake_runs import fake_run
from fault_helpers import PEAK_RSS, REPO
from PIL import Image, ImageCms

from ablation import upscale
from ablation.checkpoint import load_model, save_checkpoint
from ablation.degradation import bicubic_up, quantize
from ablation.models import ModelSpec, build_model
from ablation.tasks import BASELINE, SRCNN3

H, W = 14, 18  # small odd-ish LR images keep the tests fast


def _pattern(h: int = H, w: int = W, c: int = 3, seed: int = 0) -> np.ndarray:
    """uint8 ``(h, w, c)`` with gradients, edges and a little noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    planes = [(x * 13 + y * 5) % 256, ((x // 3 + y // 3) % 2) * 200 + 20, (x * y * 3) % 256]
    img = np.stack(planes[:c], axis=2) + rng.integers(0, 20, (h, w, c))
    return np.clip(img, 0, 255).astype(np.uint8)


def _ckpt(path: Path, spec: ModelSpec, scale: int) -> Path:
    torch.manual_seed(0)
    save_checkpoint(path, build_model(spec, scale))
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """A random-weight task 4 BASELINE checkpoint at x2."""
    return _ckpt(tmp_path_factory.mktemp("ckpt") / "m.pt", BASELINE, 2)


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    rc = upscale.main([*argv, "--quiet"])
    out, err = capsys.readouterr()
    return rc, out, err


def _open(path: Path) -> Image.Image:
    img = Image.open(path)
    img.load()
    return img


# --------------------------------------------------------------------------- image kinds


def test_rgb_png_name_size_and_summary(tmp_path, ckpt, capsys):
    Image.fromarray(_pattern()).save(tmp_path / "photo.png")
    rc, out, err = _run([str(tmp_path / "photo.png"), "--checkpoint", str(ckpt),
                         "--out", str(tmp_path / "out")], capsys)
    assert rc == 0, err
    res = _open(tmp_path / "out" / "photo_x2_m.png")
    assert res.mode == "RGB" and res.size == (2 * W, 2 * H)
    assert "wrote 1 file(s)" in out and "s/MP" in out


@pytest.mark.parametrize("kind", ["gray", "rgba", "16bit", "palette", "exif_jpeg", "webp",
                                  "bmp", "tiff"])
def test_image_kinds(tmp_path, ckpt, capsys, kind):
    rgb, gray = _pattern(), _pattern(c=1)[:, :, 0]
    src = tmp_path / "in"
    src.mkdir()
    size, mode = (2 * W, 2 * H), "RGB"
    if kind == "gray":
        Image.fromarray(gray).save(src / "a.png")
        mode = "L"
    elif kind == "rgba":
        Image.fromarray(np.dstack([rgb, gray])).save(src / "a.png")
        mode = "RGBA"
    elif kind == "16bit":
        Image.fromarray(gray.astype(np.uint16) * 257).save(src / "a.png")
        mode = "L"
    elif kind == "palette":
        Image.fromarray(rgb).convert("P").save(src / "a.png")
    elif kind == "exif_jpeg":
        exif = Image.Exif()
        exif[0x0112] = 6  # rotate 90 degrees clockwise to display
        Image.fromarray(rgb).save(src / "a.jpg", exif=exif.tobytes(), quality=95)
        size = (2 * H, 2 * W)
    elif kind == "webp":
        Image.fromarray(rgb).save(src / "a.webp", lossless=True)
    elif kind == "bmp":
        Image.fromarray(rgb).save(src / "a.bmp")
    elif kind == "tiff":
        Image.fromarray(rgb).save(src / "a.tiff")
    rc, _, err = _run([str(src), "--checkpoint", str(ckpt), "--out", str(tmp_path / "o")],
                      capsys)
    assert rc == 0, err
    res = _open(tmp_path / "o" / "a_x2_m.png")
    assert res.size == size and res.mode == mode


def test_alpha_is_upscaled_bicubically(tmp_path, ckpt, capsys):
    alpha = _pattern(c=1, seed=3)
    Image.fromarray(np.dstack([_pattern(), alpha])).save(tmp_path / "a.png")
    rc, _, err = _run([str(tmp_path / "a.png"), "--checkpoint", str(ckpt), "--tile", "6",
                       "--out", str(tmp_path)], capsys)
    assert rc == 0, err
    got = np.asarray(_open(tmp_path / "a_x2_m.png").getchannel("A")).astype(int)
    lr = torch.from_numpy(alpha[:, :, 0]).double()
    want = quantize(bicubic_up(lr, 2)).numpy().astype(int)
    assert got.shape == (2 * H, 2 * W)
    assert np.abs(got - want).max() <= 1


def test_icc_profile_carried_over(tmp_path, ckpt, capsys):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(_pattern()).save(tmp_path / "c.png", icc_profile=icc)
    Image.fromarray(_pattern()).save(tmp_path / "c2.jpg", icc_profile=icc, quality=95)
    rc, _, err = _run([str(tmp_path / "c.png"), str(tmp_path / "c2.jpg"), "--checkpoint",
                       str(ckpt), "--out", str(tmp_path / "o")], capsys)
    assert rc == 0, err
    assert _open(tmp_path / "o" / "c_x2_m.png").info.get("icc_profile") == icc
    assert _open(tmp_path / "o" / "c2_x2_m.png").info.get("icc_profile") == icc


def test_bad_files_reported_others_written(tmp_path, ckpt, capsys):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(_pattern()).save(src / "good.png")
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    (src / "notes.txt").write_text("folders skip non-images")
    other = tmp_path / "readme.md"
    other.write_text("explicit non-image")
    rc, out, err = _run([str(src), str(other), str(tmp_path / "missing.png"), "--checkpoint",
                         str(ckpt), "--out", str(tmp_path / "o")], capsys)
    assert rc == 2  # two arguments name no image (usage); the good file is still written
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 3
    assert any("broken.png" in ln for ln in lines)
    assert any("readme.md" in ln and "unsupported" in ln for ln in lines)
    assert any("missing.png" in ln for ln in lines)
    assert (tmp_path / "o" / "good_x2_m.png").exists()
    assert "3 failed" in out


# --------------------------------------------------------------------------- models


def test_bicubic_model_matches_protocol(tmp_path, capsys):
    img = _pattern()
    Image.fromarray(img).save(tmp_path / "b.png")
    rc, _, err = _run([str(tmp_path / "b.png"), "--model", "bicubic", "--scale", "3",
                       "--tile", "5", "--out", str(tmp_path)], capsys)
    assert rc == 0, err
    got = np.asarray(_open(tmp_path / "b_x3_bicubic.png")).astype(int)
    lr = torch.from_numpy(img).permute(2, 0, 1).double()
    want = quantize(bicubic_up(lr, 3)).permute(1, 2, 0).numpy().astype(int)
    assert np.abs(got - want).max() <= 1


def test_tiled_output_equals_whole(tmp_path, ckpt, capsys):
    Image.fromarray(_pattern(31, 27)).save(tmp_path / "t.png")
    for tile, out in (("0", "whole"), ("8", "tiled")):
        rc, _, err = _run([str(tmp_path / "t.png"), "--checkpoint", str(ckpt), "--tile", tile,
                           "--out", str(tmp_path / out)], capsys)
        assert rc == 0, err
    a = np.asarray(_open(tmp_path / "whole" / "t_x2_m.png")).astype(int)
    b = np.asarray(_open(tmp_path / "tiled" / "t_x2_m.png")).astype(int)
    assert np.abs(a - b).max() <= 1


def test_scale_mismatch_is_one_line_error(tmp_path, ckpt, capsys):
    Image.fromarray(_pattern()).save(tmp_path / "s.png")
    rc, _, err = _run([str(tmp_path / "s.png"), "--checkpoint", str(ckpt), "--scale", "3",
                       "--out", str(tmp_path / "o")], capsys)
    assert rc == 2
    assert err.strip().count("\n") == 0
    assert "x2" in err and "x3" in err and "m.pt" in err
    assert not (tmp_path / "o").exists()


def test_no_trained_model_tells_how_to_fix(tmp_path, capsys):
    Image.fromarray(_pattern()).save(tmp_path / "n.png")
    rc, _, err = _run([str(tmp_path / "n.png"), "--results", str(tmp_path / "results")], capsys)
    assert rc == 2
    assert err.strip().count("\n") == 0
    assert "--checkpoint" in err and "ablation train" in err


def test_default_and_named_model_from_results(tmp_path, capsys):
    run = fake_run(tmp_path / "results", 4, "baseline", 2, 0, dict(Set5=30.0))
    _ckpt(run / "model.pt", BASELINE, 2)
    Image.fromarray(_pattern()).save(tmp_path / "r.png")
    common = [str(tmp_path / "r.png"), "--results", str(tmp_path / "results"),
              "--out", str(tmp_path / "o")]
    rc, _, err = _run(common, capsys)
    assert rc == 0, err
    rc, _, err = _run([*common, "--model", "task4/baseline"], capsys)
    assert rc == 0, err
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["r_x2_task4-baseline.png"]


def test_self_ensemble_and_bicubic_input_net(tmp_path, capsys):
    spec = replace(SRCNN3, n_feats=8, global_residual=True)
    ck = _ckpt(tmp_path / "srcnn.pt", spec, 4)
    Image.fromarray(_pattern(9, 7)).save(tmp_path / "e.png")
    rc, _, err = _run([str(tmp_path / "e.png"), "--checkpoint", str(ck), "--scale", "4",
                       "--self-ensemble", "--tile", "4", "--out", str(tmp_path / "o")], capsys)
    assert rc == 0, err
    assert _open(tmp_path / "o" / "e_x4_srcnn.png").size == (28, 36)


# --------------------------------------------------------------------------- extras


def test_compare_image(tmp_path, ckpt, capsys):
    Image.fromarray(_pattern(40, 50)).save(tmp_path / "p.png")
    rc, _, err = _run([str(tmp_path / "p.png"), "--checkpoint", str(ckpt), "--compare",
                       "--out", str(tmp_path / "o")], capsys)
    assert rc == 0, err
    cmp_img = _open(tmp_path / "o" / "p_x2_m_compare.png")
    assert cmp_img.mode == "RGB"
    assert cmp_img.size[1] == 80 and cmp_img.size[0] > 2 * 100


def test_compare_image_shrinks_big_panels():
    big = np.zeros((300, 500, 1), np.uint8)
    out = upscale.compare_image(big, big, "x", max_side=100)
    assert out.shape[0] == 60 and out.shape[2] == 3 and out.shape[1] >= 200


def test_python_api_records_and_progress_bar(tmp_path, ckpt, capsys):
    Image.fromarray(_pattern()).save(tmp_path / "a.png")
    Image.fromarray(_pattern()).save(tmp_path / "a.jpg")  # same stem: names must not clash
    recs = upscale.upscale_files(tmp_path, 2, checkpoint=ckpt, out_dir=tmp_path / "o",
                                 progress=True)
    assert all(r.ok for r in recs)
    names = sorted(r.output.name for r in recs)
    assert len(set(names)) == 2 and "a_x2_m.png" in names
    assert recs[0].out_size == (2 * W, 2 * H) and recs[0].out_megapixels > 0


def test_add_parser_sets_func():
    parser = argparse.ArgumentParser()
    upscale.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["upscale", "x.png", "--scale", "3", "--tile", "0"])
    assert args.func is upscale.run and args.scale == 3 and args.tile == 0
    with pytest.raises(SystemExit):
        parser.parse_args(["upscale", "x.png", "--model", "bicubic", "--checkpoint", "m.pt"])


# --------------------------------------------------------------------------- memory

_CHILD = PEAK_RSS + textwrap.dedent("""
    import json, sys
    import numpy as np
    from pathlib import Path
    from PIL import Image
    import torch
    from ablation import upscale
    torch.set_num_threads(2)
    big, ckpt, out = sys.argv[1:4]
    warm = Path(out).parent / "warm.png"
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(warm)
    upscale.upscale_files([warm], 2, checkpoint=ckpt, out_dir=out, progress=False)
    reset_peak()
    before = peak_mb()
    rec = upscale.upscale_files([big], 2, checkpoint=ckpt, out_dir=out, tile=256,
                                progress=False)[0]
    print(json.dumps({"delta_mb": peak_mb() - before, "error": rec.error,
                      "size": rec.out_size}))
""")


@pytest.mark.parametrize("side", [2048, pytest.param(3000, marks=pytest.mark.slow)])
def test_large_image_runs_in_bounded_memory(tmp_path, side):
    """A big gray image at x2 (3000x3000: 36 MP out). Whole-image inference grows the peak RSS
    by 1.5 GB (2048) / 3.2 GB (3000) with this tiny net; tiled (256 px tiles), by about the
    uint8 images plus one tile's workspace: 70 / 97 MB measured."""
    y, x = np.mgrid[0:side, 0:side]
    Image.fromarray(((x * 7 + y * 3) % 256).astype(np.uint8)).save(tmp_path / "big.png")
    tiny = ModelSpec(input="lr", n_blocks=1, n_feats=4, n_colors=1)
    ck = _ckpt(tmp_path / "tiny.pt", tiny, 2)
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path / "big.png"), str(ck),
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["error"] is None and info["size"] == [2 * side, 2 * side]
    out_mb = (2 * side) ** 2 / 2**20  # 16 / 34 MB of uint8 output
    assert info["delta_mb"] < 5 * out_mb + 64, info
    assert _open(tmp_path / "out" / "big_x2_tiny.png").size == (2 * side, 2 * side)


# --------------------------------------------------------------------------- issue 15


def test_progress_bar_counts_tiles(tmp_path, ckpt, capsys, monkeypatch):
    """A bar over tiles moves while one large image runs (a bar over images sat at 0%)."""
    Image.fromarray(_pattern(40, 50)).save(tmp_path / "big.png")  # 3 x 4 tiles of <= 16
    Image.fromarray(_pattern()).save(tmp_path / "small.png")  # 14 x 18: 1 x 2 tiles
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png")  # 0 tiles
    assert upscale.count_tiles(tmp_path / "big.png", 16) == 12
    assert upscale.count_tiles(tmp_path / "broken.png", 16) == 0
    ticks = []  # the model's pass reports each tile as it is done
    model, _ = load_model(ckpt)
    upscale.upscale_array(model, _pattern(40, 50), 16, on_tile=lambda: ticks.append(1))
    assert len(ticks) == 12
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    rc = upscale.main([str(tmp_path), "--checkpoint", str(ckpt), "--tile", "16",
                       "--out", str(tmp_path / "o")])
    _, err = capsys.readouterr()
    assert rc == 1  # the broken file failed, the others were written
    bars = [p.strip() for p in err.replace("\r", "\n").splitlines() if "tile" in p and "|" in p]
    assert bars and bars[-1].startswith("upscale x2 m: 100%") and "14/14" in bars[-1], bars
    rc = upscale.main([str(tmp_path / "small.png"), "--checkpoint", str(ckpt), "--no-progress",
                       "--out", str(tmp_path / "o")])
    assert rc == 0 and "tile" not in capsys.readouterr().err


def test_16bit_input_written_as_8bit_says_so(tmp_path, ckpt, capsys):
    Image.fromarray(_pattern(c=1)[:, :, 0].astype(np.uint16) * 257).save(tmp_path / "deep.png")
    Image.fromarray(_pattern()).save(tmp_path / "plain.png")
    rc, _, err = _run([str(tmp_path), "--checkpoint", str(ckpt), "--out", str(tmp_path / "o")],
                      capsys)
    notes = [ln for ln in err.splitlines() if ln.startswith("note:")]
    assert rc == 0 and len(notes) == 1, err
    assert str(tmp_path / "deep.png") in notes[0] and "16-bit" in notes[0] and "8-bit" in notes[0]
    assert _open(tmp_path / "o" / "deep_x2_m.png").mode == "L"


def test_no_checkpoint_outside_the_repository_names_results_and_lists_models(
        tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not a checkout: ./results is not there
    monkeypatch.delenv("ABLATION_RESULTS", raising=False)
    Image.fromarray(_pattern()).save(tmp_path / "n.png")
    rc, _, err = _run([str(tmp_path / "n.png"), "--out", str(tmp_path / "o")], capsys)
    assert rc == 2 and err.strip().count("\n") == 0, err
    assert "--results" in err and "ABLATION_RESULTS" in err
    assert f"no models at x2 in {tmp_path / 'results' / 'cpu'}" in err
    # models that exist at the scale asked for are listed (by the name --model takes)
    results = tmp_path / "elsewhere"
    for task, variant, scale in ((4, "baseline", 3), (8, "width96", 3), (4, "baseline", 2)):
        folder = results / "cpu" / f"task{task:02d}" / variant / f"x{scale}" / "seed0"
        folder.mkdir(parents=True)
        (folder / "model.pt").write_bytes(b"")
    rc, _, err = _run([str(tmp_path / "n.png"), "--scale", "3", "--results", str(results),
                       "--model", "task7/leakyrelu"], capsys)
    assert rc == 2 and err.strip().count("\n") == 0, err
    assert "no trained checkpoint for task7/leakyrelu at x3" in err
    assert "models at x3 in" in err and "task4/baseline, task8/width96" in err
    assert "--results (or $ABLATION_RESULTS)" in err


def test_demo_notebook_and_default_out_folder_are_git_ignored():
    nb = json.loads((REPO / "notebooks" / "demo.ipynb").read_text())
    params = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    namespace: dict = {}
    exec("".join(params["source"]), namespace)
    out = (REPO / "notebooks" / namespace["out_dir"]).resolve().relative_to(REPO)
    for folder in (out, Path(upscale.DEFAULT_OUT)):
        probe = str(folder / "inputs" / "a_x2_best.png")
        proc = subprocess.run(["git", "check-ignore", "-q", probe], cwd=REPO)
        assert proc.returncode == 0, f"{probe} is not git-ignored: a demo run dirties the repo"


def test_unreadable_input_gets_advice_for_a_users_file(tmp_path, ckpt, capsys):
    (tmp_path / "mine.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    rc, _, err = _run([str(tmp_path / "mine.png"), "--checkpoint", str(ckpt),
                       "--out", str(tmp_path / "o")], capsys)
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert rc == 1 and len(lines) == 1, err
    assert "re-export" in lines[0] and "fetch" not in lines[0]
