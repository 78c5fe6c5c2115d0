"""The `pipeline` command: manifest build/check, run, report, methods."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from manifests.io import ManifestError
from pipeline.resources import BATCH_PIXEL_BYTES, CPU_METHOD_MAX_BATCH
from stages.imageio import DEFAULT_MAX_PIXELS

app = typer.Typer(
    help="facefill: batch face inpainting on Ray Data.\n\n"
    "Example:\n\n"
    "  pipeline manifest build --images faces/ --masks masks/ --pair random --seed 0 --out m.parquet\n\n"
    "  pipeline run --manifest m.parquet --method telea --out out/\n\n"
    "  pipeline report out/",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
manifest_app = typer.Typer(help="Build and check manifests (Parquet: id, image, mask, gt).",
                           no_args_is_help=True, rich_markup_mode=None)
app.add_typer(manifest_app, name="manifest")
masks_app = typer.Typer(help="Benchmark mask protocols (center, noise:P, brush:LO-HI, lama-*).",
                        no_args_is_help=True, rich_markup_mode=None)
app.add_typer(masks_app, name="masks")
from pipeline.cli_weights import weights_app  # noqa: E402 (typer and stdlib only)

app.add_typer(weights_app, name="weights")


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


@manifest_app.command("build")
def manifest_build(
    images: Path = typer.Option(..., help="Folder of images to repair."),
    masks: Optional[Path] = typer.Option(None, help="Folder of masks (255 = hole; 0/1 and RGB(A) masks "
                                         "work); with --mask-kind, the folder the generated masks are "
                                         "written to."),
    mask: Optional[Path] = typer.Option(None, help="One mask file for every image instead of --masks "
                                        "(e.g. a watermark at a fixed position); resized (nearest) to "
                                        "each image's size, with a warning in the results."),
    out: Path = typer.Option(..., help="Manifest file to write (.parquet)."),
    mask_kind: Optional[str] = typer.Option(None, help="Generate one mask per image at its size instead: "
                                            "center | noise:P | brush:LO-HI | lama-thin|medium|thick; or "
                                            "nvidia[:B1,B2] to draw one mask per image from each bucket "
                                            "(e.g. nvidia:0.10-0.20,0.30-0.40,0.50-0.60) of --masks DIR."),
    pair: str = typer.Option("same-name", help="same-name: mask with the image's file stem; "
                             "random: a mask drawn per image from --seed."),
    seed: int = typer.Option(0, help="Seed of --pair random; the same seed gives the same manifest."),
    gt: Optional[Path] = typer.Option(None, help="Folder of ground truths matched by stem. Default: "
                                      "the image itself with --pair random, none with same-name."),
    dilate: int = typer.Option(0, help="Grow every hole by N pixels (disc) at the image's size, e.g. "
                               "to cover the halo a stamp leaves; recorded as column mask_dilate."),
) -> None:
    """Pair images with masks into a manifest.

    Example (benchmark protocol: clean faces, NVIDIA masks, the face is its own ground truth):

      pipeline manifest build --images ../shared/bench-dev/faces/256
      --masks ../shared/bench-dev/masks --pair random --seed 0 --out m.parquet

    Clean-up job (one logo mask for every photo, grown by 3 px):

      pipeline manifest build --images photos/ --mask logo.png --dilate 3 --out m.parquet
    """
    from manifests.build import BuildConfig, Pairing, build_manifest
    from manifests.io import write_manifest

    if (masks is None) == (mask is None):
        _fail("give --masks DIR (or with --mask-kind, the folder to write masks to) or --mask FILE")
    if dilate < 0:
        _fail(f"--dilate must be >= 0 pixels, not {dilate}")
    if mask_kind and mask_kind.split(":")[0] == "nvidia":
        from manifests.nvidia import NvidiaConfig, build_nvidia_manifest, parse_buckets

        if masks is None:
            _fail("--mask-kind nvidia draws from --masks DIR (the NVIDIA test masks)")
        try:
            table = build_nvidia_manifest(NvidiaConfig(images, masks, parse_buckets(mask_kind), seed, gt))
        except (ValueError, ManifestError) as exc:
            _fail(str(exc))
        write_manifest(table, out)
        typer.echo(f"wrote {out}: {len(table)} rows (NVIDIA masks per bucket from {masks})")
        return
    if mask_kind:
        if masks is None:
            _fail("--mask-kind writes its masks into --masks DIR; --mask does not apply")
        if dilate:
            _fail("--dilate does not apply to --mask-kind protocol masks (use pipeline run --dilate)")
        from pipeline.mask_files import build_protocol_manifest
        from stages.mask_protocols import parse_mask_kind

        try:
            table = build_protocol_manifest(images, parse_mask_kind(mask_kind), masks, seed, gt)
        except (ValueError, ManifestError) as exc:
            _fail(str(exc))
        write_manifest(table, out)
        typer.echo(f"wrote {out}: {len(table)} rows, {mask_kind} masks in {masks}")
        return
    try:
        pairing = Pairing(pair)
    except ValueError:
        _fail(f"--pair must be same-name or random, not '{pair}'")
    try:
        result = build_manifest(BuildConfig(images=images, masks=masks, pairing=pairing, seed=seed, gt=gt,
                                            mask_file=mask, dilate=dilate))
    except ManifestError as exc:
        _fail(str(exc))
    for problem in result.unmatched:
        typer.echo(f"skipped {problem}", err=True)
    write_manifest(result.table, out)
    typer.echo(f"wrote {out}: {len(result.table)} rows ({len(result.unmatched)} image(s) skipped)")


@manifest_app.command("check")
def manifest_check(
    manifest: Path = typer.Argument(..., help="Manifest to validate."),
    mask_threshold: int = typer.Option(0, help="Mask pixels above this count as hole."),
) -> None:
    """Validate a manifest and print row counts per mask-ratio bucket.

    Reads every mask; exits non-zero when any row is unusable. Example:

      pipeline manifest check m.parquet
    """
    from pipeline.manifest_check import check_manifest, format_check

    try:
        report = check_manifest(manifest, mask_threshold)
    except ManifestError as exc:
        _fail(str(exc))
    typer.echo(format_check(report))
    if report.problems:
        raise typer.Exit(1)


@masks_app.command("generate")
def masks_generate(
    kind: str = typer.Option(..., help="center | noise:P | brush:LO-HI | lama-thin | lama-medium | lama-thick"),
    out: Path = typer.Option(..., help="Folder for NNNNN.png masks and masks.csv."),
    size: int = typer.Option(256, help="Square mask side; see --height/--width for other shapes."),
    height: Optional[int] = typer.Option(None, help="Mask height (default --size)."),
    width: Optional[int] = typer.Option(None, help="Mask width (default --size)."),
    count: int = typer.Option(100, help="Number of masks."),
    seed: int = typer.Option(0, help="Base seed; mask i uses seed + i (same seed, same masks)."),
) -> None:
    """Write a reproducible set of protocol masks (255 = hole) with a masks.csv index.

    Example (seed 000's brush buckets at 256 px):

      pipeline masks generate --kind brush:10-20 --size 256 --count 250 --out masks/brush10-20
    """
    from pipeline.mask_files import GenerateConfig, generate_folder
    from stages.mask_protocols import parse_mask_kind

    try:
        parsed = parse_mask_kind(kind)
    except ValueError as exc:
        _fail(str(exc))
    ratios = generate_folder(GenerateConfig(parsed, height or size, width or size, count, seed, out))
    typer.echo(f"wrote {count} {parsed.spec} masks to {out} (hole ratio {min(ratios):.3f}-{max(ratios):.3f}, "
               f"mean {sum(ratios) / len(ratios):.3f})")


@app.command("run")
def run(
    manifest: Path = typer.Option(..., help="Manifest (.parquet) with id, image, mask[, gt]."),
    out: Path = typer.Option(..., help="Output folder: images/<id>.png, results/*.parquet, run.json."),
    method: str = typer.Option("telea", help="Inpainting method; `pipeline methods` lists them."),
    method_opt: list[str] = typer.Option([], "--method-opt", help="Method option KEY=VALUE (repeatable)."),
    fusion: Optional[str] = typer.Option(None, help="paste | poisson. Default: poisson for methods "
                                         "that generate a whole image, paste otherwise."),
    mask_threshold: int = typer.Option(0, help="Mask pixels above this count as hole."),
    address: Optional[str] = typer.Option(None, help="Ray cluster: ray://host:10001 or auto. "
                                          "Default: an embedded local Ray."),
    num_cpus: Optional[int] = typer.Option(None, help="CPUs of the embedded Ray (default: all)."),
    actors: Optional[int] = typer.Option(None, help="Method actors (default: sized from the cluster)."),
    batch_size: Optional[int] = typer.Option(
        None, help=f"Rows per method call (default: planned; CPU methods up to {CPU_METHOD_MAX_BATCH} rows or "
                   f"{BATCH_PIXEL_BYTES >> 20} MiB of pixels, GPU methods their own)."),
    limit: Optional[int] = typer.Option(None, help="Only the first N manifest rows."),
    variants: int = typer.Option(1, help="Results per image (methods with latent editing, e.g. "
                                 "stylegan-inv); each is its own result row and image."),
    edit_strength: Optional[float] = typer.Option(None, help="Latent edit strength of the variants."),
    dilate: Optional[int] = typer.Option(None, help="Grow every hole by N pixels (disc). Replaces the "
                                         "manifest's mask_dilate column on every row (--dilate 0 turns "
                                         "it off); without --dilate each row's mask_dilate applies."),
    output_format: str = typer.Option("png", "--format", help="Result image format: png | jpg | webp | "
                                      "same (the input file's; PNG for other inputs). JPEG/WebP quality "
                                      "95; only png keeps known pixels bit-identical."),
    lpips: str = typer.Option("auto", help="Per-image LPIPS trunk: alex (as MAT) | vgg (as LaMa) | off | "
                              "auto (alex when alexnet-owt-7be5be79.pth is installed, else off)."),
    max_pixels: int = typer.Option(DEFAULT_MAX_PIXELS, help="Inputs whose header declares more pixels "
                                   "(width x height) become error rows before decoding: decompression bombs."),
    overwrite: bool = typer.Option(False, help="Delete OUT's earlier results instead of resuming."),
) -> None:
    """Inpaint every manifest row through the Ray Data graph and score it.

    Rerunning into the same OUT resumes: finished ids are skipped, failed ones retried, and the
    results hold each id exactly once. Example:

      pipeline run --manifest m.parquet --method telea --out out/
    """
    import dataclasses

    from pipeline.config import RunConfig
    from pipeline.run import RunError, execute
    from stages.fusion import FUSERS
    from workers.registry import UnknownMethodError, get_method

    options = {}
    for item in method_opt:
        key, sep, value = item.partition("=")
        if not sep:
            _fail(f"--method-opt expects KEY=VALUE, got '{item}'")
        value = value.strip()
        if value and not Path(value).is_absolute() and Path(value).exists():
            value = str(Path(value).resolve())  # actors may run in another working directory
        options[key.strip()] = value
    try:
        method_cls = get_method(method)
    except UnknownMethodError as exc:
        _fail(str(exc.args[0]))
    fields = {f.name for f in dataclasses.fields(method_cls.Config)}
    for flag, key, value, default in (("--variants", "variants", variants, 1),
                                      ("--edit-strength", "edit_strength", edit_strength, None)):
        if value != default:
            if key not in fields:
                _fail(f"{flag}: method '{method}' has no latent to edit (it produces one result per image)")
            options[key] = str(value)
    fusion = fusion or ("poisson" if method_cls.generates_whole_image else "paste")
    if fusion not in FUSERS:
        _fail(f"--fusion must be one of {', '.join(FUSERS)}, not '{fusion}'")
    from stages.imageio import FORMAT_CHOICES

    if output_format not in FORMAT_CHOICES:
        _fail(f"--format must be one of {', '.join(FORMAT_CHOICES)}, not '{output_format}'")
    if dilate is not None and dilate < 0:
        _fail(f"--dilate must be >= 0 pixels, not {dilate}")
    if max_pixels <= 0:
        _fail(f"--max-pixels must be > 0, not {max_pixels}")
    config = RunConfig(manifest=manifest, out=out, method=method, method_options=options, fusion=fusion,
                       mask_threshold=mask_threshold, address=address, num_cpus=num_cpus, actors=actors,
                       batch_size=batch_size, limit=limit, dilate=dilate, output_format=output_format,
                       lpips=lpips, max_pixels=max_pixels)
    try:
        summary = execute(config, progress=lambda line: typer.echo(line, err=True), overwrite=overwrite)
    except (RunError, ManifestError, ValueError) as exc:
        _fail(str(exc))
    typer.echo(
        f"done: {summary.ok} ok, {summary.errors} error, {summary.skipped} already finished, "
        f"{summary.rejected} rejected manifest row(s) in {summary.seconds:.1f} s "
        f"({summary.images_per_second:.2f} images/s)\n"
        f"  images:  {out / 'images'}\n  results: {out / 'results'}\n  run:     {out / 'run.json'}"
    )
    if summary.errors:
        typer.echo("  errors (first ones):\n    " + "\n    ".join(summary.error_samples[:5]))


@app.command("report")
def report(
    out: Path = typer.Argument(..., help="A run's output folder (the baseline when comparing)."),
    compare: list[Path] = typer.Option([], "--compare", help="Other run folders to put side by side "
                                       "(repeatable); regressions against OUT are flagged and exit 1."),
    html: bool = typer.Option(False, "--html", help="Also write OUT/report/index.html: tables, plots per "
                              "metric against mask ratio, sample grids per bucket, definitions, configs."),
    bootstrap: int = typer.Option(1000, help="Bootstrap resamples for the 95% intervals."),
    seed: int = typer.Option(0, help="Bootstrap seed (reports are reproducible)."),
    fid: Optional[bool] = typer.Option(None, "--fid/--no-fid", help="FID and KID per bucket (torch-fidelity). "
                                       "Default: when the Inception weights are installed; --fid requires them."),
    device: str = typer.Option("auto", help="Device for FID features: auto | cpu | cuda."),
    diversity: Optional[bool] = typer.Option(None, "--diversity/--no-diversity", help="LPIPS between the "
                                             "variants of each input (runs with --variants). Default: when "
                                             "the run has variants and LPIPS weights are installed."),
) -> None:
    """Per mask-ratio bucket: count, mean and 95% bootstrap interval of every metric.

    Writes OUT/report/report.md and report.json (and index.html with --html; compare.md with
    --compare) and prints the table. Examples:

      pipeline report out/telea --html

      pipeline report out/nightly-baseline --compare out/tonight --html   # exit 1 on a regression
    """
    from pipeline.diversity import add_diversity
    from pipeline.report import ReportError, add_fid, build_report, write_report
    from workers.weights_files import MissingWeightsError

    reports = []
    try:
        for folder in [out, *compare]:
            built = build_report(folder, n_bootstrap=bootstrap, seed=seed)
            add_fid(built, fid, device)
            add_diversity(built, diversity, n_bootstrap=bootstrap, seed=seed)
            reports.append(built)
    except (ReportError, MissingWeightsError, ValueError) as exc:
        _fail(str(exc))
    folder = out / "report"
    typer.echo(write_report(reports[0], folder))
    written = ["report.md", "report.json"]
    if html:
        from pipeline.report_html import write_html

        write_html(reports, folder)
        written.append("index.html")
    regressions = []
    if compare:
        from pipeline.report_compare import compare as find_regressions
        from pipeline.report_compare import exit_code, to_markdown_compare

        regressions = find_regressions(reports)
        text = to_markdown_compare(reports, regressions)
        (folder / "compare.md").write_text(text)
        typer.echo(text)
        written.append("compare.md")
    typer.echo(f"wrote {', '.join(written)} in {folder}")
    if regressions:
        raise typer.Exit(exit_code(regressions))


@app.command("bench")
def bench(
    manifest: Path = typer.Option(..., help="Manifest every method runs on."),
    methods: str = typer.Option(..., help="Comma-separated methods; the first is the baseline."),
    out: Path = typer.Option(..., help="Folder: one run folder per method, the comparison in OUT/<first>/report."),
    method_opt: list[str] = typer.Option([], "--method-opt", help="METHOD:KEY=VALUE for one method (repeatable)."),
    address: Optional[str] = typer.Option(None, help="Ray cluster address (default: embedded Ray)."),
    num_cpus: Optional[int] = typer.Option(None, help="CPUs of the embedded Ray."),
    limit: Optional[int] = typer.Option(None, help="Only the first N manifest rows."),
    fid: Optional[bool] = typer.Option(None, "--fid/--no-fid", help="FID/KID per bucket (default: when installed)."),
    lpips: str = typer.Option("auto", help="Per-image LPIPS trunk for every run: alex | vgg | off | auto."),
) -> None:
    """Run several methods on one manifest, then write the side-by-side HTML/Markdown comparison.

    Each method's run resumes like `pipeline run`; the report flags regressions against the first
    method and exits 1 when there are any. Example (a nightly job):

      pipeline bench --manifest m.parquet --methods telea,ns --out nightly/
    """
    names = [m.strip() for m in methods.split(",") if m.strip()]
    if not names:
        _fail("--methods lists no method")
    per_method: dict[str, list[str]] = {name: [] for name in names}
    for item in method_opt:
        name, sep, option = item.partition(":")
        if not sep or name not in per_method:
            _fail(f"--method-opt for bench is METHOD:KEY=VALUE with METHOD one of {', '.join(names)}, got '{item}'")
        per_method[name].append(option)
    for name in names:
        typer.echo(f"== {name}", err=True)
        _call_with_defaults(run, manifest=manifest, out=out / name, method=name, method_opt=per_method[name],
                            address=address, num_cpus=num_cpus, limit=limit, lpips=lpips)
    _call_with_defaults(report, out=out / names[0], compare=[out / name for name in names[1:]], html=True, fid=fid)


def _call_with_defaults(command, **given):
    """Call another command's function with `given`, every other option at its CLI default (so a
    new option of `run` or `report` cannot silently reach it as a typer OptionInfo)."""
    import inspect

    kwargs = {}
    for name, parameter in inspect.signature(command).parameters.items():
        default = parameter.default
        kwargs[name] = given[name] if name in given else getattr(default, "default", default)
    return command(**kwargs)


@app.command("train-encoder")
def train_encoder_cmd(
    generator: Path = typer.Option(..., help="StyleGAN2 checkpoint (rosinality .pt or NVIDIA .pkl)."),
    out: Path = typer.Option(..., help="Encoder file to write (.pt)."),
    steps: int = typer.Option(5000, help="Optimisation steps."),
    batch_size: int = typer.Option(8, help="Generated faces per step."),
    lr: float = typer.Option(1e-4, help="Adam learning rate."),
    backbone: str = typer.Option("resnet50", help="resnet50 (the paper's) | resnet34 | resnet18."),
    imagenet_init: bool = typer.Option(False, help="Start the ResNet from ImageNet weights "
                                       "(weights folder: resnet50-11ad3fa6.pth)."),
    seed: int = typer.Option(0, help="Seed of latents, masks and initialisation."),
    device: str = typer.Option("auto", help="auto (cuda when present) | cuda | cpu."),
) -> None:
    """Train the W+ encoder of stylegan-inv on (w, G(w)) pairs from the generator, randomly masked.

    As in seed 000: the training data come from the generator itself, so no data set is needed.
    Example:

      pipeline train-encoder --generator stylegan2-ffhq-256.pt --out encoder.pt --steps 20000
    """
    from workers.encoder_training import EncoderTrainConfig, train_encoder
    from workers.weights_files import MissingWeightsError

    try:
        config = EncoderTrainConfig(generator=str(generator), out=str(out), steps=steps, batch_size=batch_size,
                                    lr=lr, backbone=backbone, seed=seed, device=device,
                                    imagenet_init="imagenet" if imagenet_init else "")
        path = train_encoder(config)
    except (MissingWeightsError, ValueError) as exc:
        _fail(str(exc))
    typer.echo(f"wrote {path}")


@app.command("methods")
def methods() -> None:
    """List the registered inpainting methods and their options."""
    import dataclasses

    from workers.registry import available_methods

    for name, cls in available_methods().items():
        options = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(cls.Config))
        typer.echo(f"{name:14s} {cls.description}\n{'':14s} options: {options or 'none'}")


def main() -> None:
    """Console-script entry point."""
    app(prog_name="pipeline")


if __name__ == "__main__":
    sys.exit(main())
