"""What each ``medtl`` command does with its parsed arguments: call :mod:`medtl.api`
and print. :mod:`medtl.cli.parser` holds the argument table and the error handling."""

from __future__ import annotations

import argparse
import json
import sys

from medtl.cli.decisions import evaluate_options, predict_options


def cmd_train(a: argparse.Namespace) -> int:
    from medtl import api
    from medtl.configuration.loading import dump_config, load_config
    from medtl.training.resume import resume_config

    resume = [o.split("=", 1)[1] for o in a.overrides if o.lstrip("+").startswith("train.resume=")]
    cfg = resume_config(resume[-1], a.overrides) if resume else load_config(a.config, a.overrides)
    if a.print_config:
        print(dump_config(cfg), end="")
        return 0
    from medtl.runs.folder import process_rank

    run = api.train(cfg, progress=not a.no_progress)
    if process_rank() == 0:  # DDP workers stay silent: the path is the last line of rank 0
        print(run)
    return 0


def cmd_evaluate(a: argparse.Namespace) -> int:
    from medtl import api

    summary = api.evaluate(
        a.run,
        data=a.data,
        split=a.split,
        tta=a.tta,
        overrides=a.overrides,
        optimise=not a.eager,
        plots=not a.no_plots,
        checkpoint=a.checkpoint,
        config=a.config,  # a comparison's configuration: its fold ensemble
        strict=a.strict,
        postprocess=a.postprocess,
        device=a.device,
        **_offsets(a),
        **evaluate_options(a),  # --calibrate, operating point, --hd95 (medtl.cli.decisions)
    )
    if summary.get("rank"):
        return 0  # another DDP process; rank 0 prints
    print(api.format_summary(summary))
    print(summary["out_dir"])
    return 0


def cmd_predict(a: argparse.Namespace) -> int:
    from medtl import api

    if a.mask_format != "png" and (a.onnx or a.int8 or a.config or _ensemble(a.run)):
        from medtl.utils.errors import ConfigError

        raise ConfigError(
            f"--mask-format {a.mask_format} works with a run's PyTorch model; "
            "drop --onnx/--int8/--config, or the option"
        )
    if (a.onnx or a.int8) and a.class_offsets:
        from medtl.utils.errors import ConfigError

        raise ConfigError(
            "--class-offsets: an exported ensemble's graph holds the offsets it was exported "
            "with; drop --onnx, or the option"
        )
    if a.onnx or a.int8:
        from medtl.exporting import onnx_target, predict_onnx

        run, model = onnx_target(a.run, a.config, a.int8)  # --config: the ensemble's graph
        written = predict_onnx(
            run,
            a.inputs,
            a.out,
            tta=a.tta,
            model=model,
            batch_size=a.batch_size,
            postprocess=a.postprocess,
            **predict_options(a),
        )
    else:
        written = api.predict(
            a.run,
            a.inputs,
            a.out,
            tta=a.tta,
            optimise=not a.eager,
            batch_size=a.batch_size,
            config=a.config,
            strict=a.strict,
            postprocess=a.postprocess,
            device=a.device,
            **_offsets(a),
            **predict_options(a),
        )
    for line in written:
        print(line)
    return 0


def _offsets(a: argparse.Namespace) -> dict[str, str]:
    """``class_offsets`` for the API when ``--class-offsets`` was given."""
    return {"class_offsets": a.class_offsets} if a.class_offsets else {}


def _ensemble(run: str) -> bool:
    from medtl.comparison.ensemble import is_cell_folder

    return is_cell_folder(run)


def cmd_explain(a: argparse.Namespace) -> int:
    from medtl import api

    for line in api.explain(
        a.run, a.inputs, a.out, method=a.method, target=a.target, layer=a.layer, device=a.device
    ):
        print(line)
    return 0


def cmd_app(a: argparse.Namespace) -> int:
    from medtl import api

    api.app(a.run, host=a.host, port=a.port, device=a.device)
    return 0


def cmd_export(a: argparse.Namespace) -> int:
    from medtl import api

    info = api.export(
        a.run, int8=a.int8, opset=a.opset, config=a.config, out=a.out, strict=a.strict
    )
    if info.get("ensemble"):
        e = info["ensemble"]
        print(
            f"fold ensemble of {e['n_members']} models; post-processing {e['postprocess'] or 'none'}"
            " (not in the graph: medtl predict CMP --config N --onnx applies it)"
        )
        if e.get("class_offsets"):
            from medtl.evaluation.class_offsets import offsets_text

            said = offsets_text(e["class_offsets"])
            print(f"class offsets {said} (in the graph: added to the class logits)")
    diffs = ", ".join(f"{k} {v:.2e}" for k, v in info["parity"]["max_abs_diff"].items())
    print(f"parity vs PyTorch (max abs diff): {diffs}")
    if info.get("int8"):
        q = info["int8"]
        drop = q.get("dice_drop", q.get("accuracy_drop"))
        print(
            f"int8: {q['onnx']} (validation drop {drop:+.4f}, {q['speed']['speedup']}x fp32 ONNX speed)"
        )
    print(info["onnx"])
    return 0


def cmd_synth(a: argparse.Namespace) -> int:
    from medtl import api

    print(api.synth(a.out, n=a.n, size=a.size, seed=a.seed, layout=a.layout, labels=a.labels))
    return 0


def cmd_demo(a: argparse.Namespace) -> int:
    from medtl import api

    api.demo(a.out, quick=a.quick)
    return 0


def cmd_audit(a: argparse.Namespace) -> int:
    from medtl import api

    report = api.audit(a.data, layout=a.layout, overrides=list(a.overrides or []) + (a.o or []))
    print(json.dumps(report.to_dict(), indent=2, default=str) if a.json else report.format())
    if a.preview is not None:  # stderr beside --json: stdout stays one JSON document
        where = sys.stderr if a.json else sys.stdout
        print(f"preview: {api.audit_preview(a.data, a.preview or None, a.layout)}", file=where)
    return 1 if (a.strict and not report.ok) else 0


def cmd_slices(a: argparse.Namespace) -> int:
    from medtl import api

    info = api.slices(a.volumes, a.out, a.axis, a.empty_fraction, a.window)
    print(f"{info['slices']} slices of {info['volumes']} volumes -> {info['manifest']}")
    return 0


def cmd_compare(a: argparse.Namespace) -> int:
    from medtl import api

    if a.collect:
        api.collect(a.collect)
        return 0
    from medtl.comparison import split_overrides

    base, grid = split_overrides(a.overrides)
    if a.device:  # training, evaluation and the speed of every cell
        base.append(f"train.accelerator={a.device}")
    out = api.compare(
        base,
        grid,
        folds=a.folds,
        out=a.out,
        config_file=a.config,
        shard=a.shard,
        progress=not a.no_progress,
        cells=[c.split() for c in a.cell] if a.cell else None,
        test_fraction=a.test_fraction,
    )
    print(out)
    return 0


def cmd_plan(a: argparse.Namespace) -> int:
    from medtl import api

    result = api.plan(
        a.data, task=a.task, budget=a.budget, folds=a.folds, out=a.out, device=a.device,
        layout=a.layout, overrides=a.overrides,
    )  # fmt: skip
    for key, choice in result["keys"].items():
        print(f"{key}={choice['value']}  # {choice['reason']}")
    print(
        f"predicted: {result['predicted_total_s']:.0f}s in all "
        f"({result['predicted_fit_s_per_run']:.0f}s of fitting per run), "
        f"peak ~{result['predicted_peak_mb']:.0f} MB"
    )
    print(f"folds={result['folds']}  # {result['folds_reason']}")
    for note in result["notes"]:
        print(note)
    print(result["out"])
    return 0


def cmd_report(a: argparse.Namespace) -> int:
    from medtl import api

    print(api.report(a.dir))
    return 0


def cmd_bench(a: argparse.Namespace) -> int:
    from medtl import _bench as bench

    result = bench.run_bench(
        a.overrides, a.naive, **bench.cli_settings(a.encoders, a.steps, a.quick, a.repeats)
    )
    print(bench.format_table(result))
    print(json.dumps(result))
    return 0


def cmd_models(a: argparse.Namespace) -> int:
    from medtl import api

    print(api.models_table())
    return 0
