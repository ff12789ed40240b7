"""The ``tinytt`` command line: argument errors, train/save/resume/eval round trip, interrupts, info, demo."""

import gzip
import json
import os
import subprocess
import sys
import threading

import numpy
import pytest

import tinytt
from tinytt import cli
from tinytt.train import load_checkpoint


def run(argv, capsys):
    """Run the CLI in-process -> (exit code, stdout, stderr)."""
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def tsv(tmp_path_factory):
    """Tiny synthetic label<TAB>text files: the label is given away by one word."""
    root = tmp_path_factory.mktemp("tsv")
    rng = numpy.random.default_rng(0)
    filler = "the a movie film it was and plot acting story of to".split()
    cue = {0: "bad awful dull".split(), 1: "good great fine".split()}
    paths = {}
    for name, n in (("train", 160), ("valid", 40), ("test", 40)):
        lines = []
        for _ in range(n):
            y = int(rng.integers(0, 2))
            words = list(rng.choice(filler, size=int(rng.integers(2, 10))))
            words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(cue[y])))
            lines.append(f"{y}\t{' '.join(words)}\n")
        p = root / f"{name}.tsv"
        p.write_text("".join(lines))
        paths[name] = str(p)
    return paths


SMALL = ["--emb-dim", "8", "--hidden", "8", "--batch-size", "16", "--lr", "0.02", "--no-progress"]

REQUIRED = {"valid_accuracy", "test_accuracy", "embedding_parameters", "compression", "total_parameters",
            "seconds", "epoch_seconds", "config"}


@pytest.mark.parametrize("argv, needle", [
    (["train", "--train", "X", "--rank", "0"], "--rank"),
    (["train", "--train", "X", "--cores", "1"], "--cores"),
    (["train", "--train", "X", "--dropout", "1.5"], "--dropout"),
    (["train", "--train", "X", "--tt-shape", "2,2x3"], "--tt-shape"),
    (["train", "--train", "X", "--tt-shape", "10x4"], "at least 2 cores"),   # as --cores 1 (built 1 core)
    (["train", "--train", "X", "--epochs", "two"], "--epochs"),
    (["train", "--model", "cnn"], "--model"),
    (["train"], "--dataset NAME or --train PATH"),
    (["train", "--dataset", "ptb", "--task", "classify"], "does not fit"),
    (["eval", "--test", "x.tsv"], "--checkpoint"),
    (["nosuchcommand"], "invalid choice"),
])
def test_argument_errors_exit_2(argv, needle, capsys):
    code, out, err = run(argv, capsys)
    assert code == 2
    assert needle in err


def test_missing_files_are_named(tmp_path, capsys):
    missing = str(tmp_path / "nope.tsv")
    code, _, err = run(["train", "--train", missing], capsys)
    assert code == 2 and missing in err
    code, _, err = run(["eval", "--checkpoint", missing, "--test", missing], capsys)
    assert code == 2 and missing in err


def test_dataset_missing_gives_clear_message(tmp_path, capsys):
    code, _, err = run(["train", "--dataset", "sst2", "--data-dir", str(tmp_path)], capsys)
    assert code == 2 and "sst2" in err and str(tmp_path) in err


def test_tt_shape_must_fit_vocab_and_dim(tsv, capsys):
    code, _, err = run(["train", "--train", tsv["train"], "--embedding", "tt", "--tt-shape", "2,2,2x2,2,2",
                        "--emb-dim", "8"] + SMALL[2:], capsys)
    assert code == 2 and "vocabulary size" in err
    code, _, err = run(["train", "--train", tsv["train"], "--embedding", "tt", "--tt-shape", "4,4,4x2,2,2",
                        "--emb-dim", "16"], capsys)
    assert code == 2 and "--emb-dim 16" in err


@pytest.mark.parametrize("extra", [
    ["--model", "lstm", "--readout", "final"],
    ["--model", "bilstm", "--readout", "mean", "--embedding", "tt", "--rank", "4"],
    ["--model", "mlp", "--embedding", "tt", "--cores", "2", "--rank", "3"],
])
def test_train_end_to_end_json(tsv, capsys, extra):
    code, out, err = run(["train", "--train", tsv["train"], "--valid", tsv["valid"], "--test", tsv["test"],
                          "--epochs", "2", "--json"] + SMALL + extra, capsys)
    assert code == 0, err
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 1
    res = json.loads(lines[0])
    assert REQUIRED <= set(res)
    assert len(res["epoch_seconds"]) == 2 and 0.0 <= res["test_accuracy"] <= 1.0
    assert res["config"]["model"] == extra[1]


def test_train_carves_validation_when_absent(tsv, capsys):
    code, out, _ = run(["train", "--train", tsv["train"], "--epochs", "1", "--json"] + SMALL, capsys)
    assert code == 0
    res = json.loads(out)
    assert res["test_accuracy"] is None and res["valid_accuracy"] is not None
    assert res["num_train"] == 144   # 160 - 10% carved for validation


def test_save_resume_eval_round_trip(tsv, tmp_path, capsys):
    ck = str(tmp_path / "model.ckpt")
    base = ["train", "--train", tsv["train"], "--valid", tsv["valid"], "--test", tsv["test"], "--embedding", "tt",
            "--rank", "4", "--json"] + SMALL
    code, out, err = run(base + ["--epochs", "1", "--save", ck], capsys)
    assert code == 0, err
    assert load_checkpoint(ck)["epoch"] == 1
    code, out, err = run(["train", "--resume", ck, "--epochs", "3", "--json", "--no-progress"], capsys)
    assert code == 0, err
    res = json.loads(out)
    assert [r["epoch"] for r in res["history"]] == [1, 2, 3]
    assert "resuming" in err
    ckpt = load_checkpoint(ck)
    assert ckpt["epoch"] == 3 and ckpt["config"]["embedding"] == "tt"
    code, out, err = run(["eval", "--checkpoint", ck, "--test", tsv["test"], "--json"], capsys)
    assert code == 0, err
    ev = json.loads(out)
    assert ev["test_accuracy"] == pytest.approx(res["test_accuracy"])
    assert ev["embedding_parameters"] == res["embedding_parameters"]


def test_keyboard_interrupt_keeps_last_checkpoint(tsv, tmp_path, capsys, monkeypatch):
    from tinytt import train as train_mod

    ck = str(tmp_path / "ck.npz")
    real = train_mod.ClassificationTask.train_epoch

    def interrupted(self, model, optimizer, epoch, **kw):
        if epoch == 1:
            raise KeyboardInterrupt
        return real(self, model, optimizer, epoch, **kw)

    monkeypatch.setattr(train_mod.ClassificationTask, "train_epoch", interrupted)
    code, out, err = run(["train", "--train", tsv["train"], "--epochs", "3", "--save", ck] + SMALL, capsys)
    assert code == 130
    assert "interrupted" in err and ck in err
    assert load_checkpoint(ck)["epoch"] == 1
    monkeypatch.undo()
    code, out, err = run(["train", "--resume", ck, "--json", "--no-progress"], capsys)
    assert code == 0, err
    assert json.loads(out)["epochs_run"] == 3


def test_lm_training_from_plain_text(tmp_path, capsys):
    rng = numpy.random.default_rng(0)
    words = [f"w{i}" for i in range(15)]
    text = "\n".join(" ".join(rng.choice(words, size=8)) for _ in range(120))
    p = tmp_path / "train.txt"
    p.write_text(text)
    code, out, err = run(["train", "--task", "lm", "--train", str(p), "--test", str(p), "--epochs", "1",
                          "--embedding", "tt", "--rank", "4", "--emb-dim", "8", "--hidden", "8",
                          "--batch-size", "4", "--bptt", "10", "--json", "--no-progress"], capsys)
    assert code == 0, err
    res = json.loads(out)
    assert {"valid_perplexity", "test_perplexity", "embedding_parameters", "compression"} <= set(res)
    assert 1.0 < res["test_perplexity"] < 1000


def test_resume_with_dropout_equals_an_uninterrupted_run(tsv, tmp_path, capsys):
    # the dropout generators' states travel in the checkpoint: 2 epochs straight and 1 + 1
    # resumed epochs give the same losses (they differed before)
    if tinytt.get_backend() == "cupy":
        pytest.skip("CuPy's random generators cannot be serialised: a resumed GPU run draws other "
                    "dropout masks (random_states warns)")
    base = ["train", "--train", tsv["train"], "--valid", tsv["valid"], "--dropout", "0.5", "--json"] + SMALL
    code, out, err = run(base + ["--epochs", "2"], capsys)
    assert code == 0, err
    straight = [r["train_loss"] for r in json.loads(out)["history"]]
    ck = str(tmp_path / "ck.npz")
    code, _, err = run(base + ["--epochs", "1", "--save", ck], capsys)
    assert code == 0, err
    assert set(load_checkpoint(ck)["random"]) == {"drop.rng", "lstm._rng"}
    code, out, err = run(["train", "--resume", ck, "--epochs", "2", "--json", "--no-progress"], capsys)
    assert code == 0, err
    assert [r["train_loss"] for r in json.loads(out)["history"]] == straight


def test_flags_that_would_be_ignored_or_crash_are_argument_errors(tsv, tmp_path, capsys):
    base = ["train", "--train", tsv["train"], "--epochs", "1"] + SMALL
    for extra in (["--tt-shape", "4,4,4x2,2,2"], ["--rank", "4"], ["--cores", "2"]):
        code, _, err = run(base + extra, capsys)   # dense embedding: these were silently ignored
        assert code == 2 and "--embedding tt" in err, extra
    code, _, err = run(base + ["--embedding", "tt", "--rank", "100000"], capsys)   # was a 7 TiB MemoryError
    assert code == 2 and "smaller rank" in err
    code, _, err = run(["demo", "--vocab-size", "1", "--steps", "1"], capsys)
    assert code == 2 and "--vocab-size" in err
    empty = tmp_path / "empty.tsv"
    empty.write_text("")
    ck = str(tmp_path / "m.npz")
    code, _, err = run(base + ["--save", ck], capsys)
    assert code == 0, err
    code, _, err = run(["eval", "--checkpoint", ck, "--test", str(empty)], capsys)   # reported accuracy 0
    assert code == 2 and "no examples" in err


def test_download_of_a_dataset_without_a_source_is_an_argument_error(tmp_path, capsys):
    code, _, err = run(["train", "--dataset", "sst2", "--download", "--data-dir", str(tmp_path)], capsys)
    assert code == 2 and "no download source" in err and "instead" not in err


def test_language_model_splits_that_are_too_short(tmp_path, capsys):
    rng = numpy.random.default_rng(0)
    train = tmp_path / "train.txt"
    train.write_text("\n".join(" ".join(rng.choice(["a", "b", "c", "d"], size=8)) for _ in range(60)))
    short = tmp_path / "short.txt"
    short.write_text("a b\n")
    common = ["train", "--task", "lm", "--train", str(train), "--epochs", "1", "--emb-dim", "8", "--hidden", "8",
              "--batch-size", "4", "--bptt", "5", "--no-progress"]
    for flag in ("--valid", "--test"):   # a crash (valid) or silently dropped (test) before
        code, _, err = run(common + [flag, str(short)], capsys)
        assert code == 2 and "need at least 4" in err, flag
    ck = str(tmp_path / "lm.npz")
    code, _, err = run(common + ["--save", ck], capsys)
    assert code == 0, err
    results = []
    for bs in ("1", "3"):
        code, out, err = run(["eval", "--checkpoint", ck, "--test", str(train), "--batch-size", bs, "--json"], capsys)
        assert code == 0, err
        results.append(json.loads(out)["n"])
    assert results[0] != results[1]   # --batch-size now sets the rows of the token stream


def test_info_runs(capsys):
    code, out, _ = run(["info"], capsys)
    assert code == 0
    assert "numpy" in out and "opt_einsum" in out and "backend" in out and "cupy" in out
    code, out, _ = run(["info", "--json"], capsys)
    info = json.loads(out)
    assert info["numpy"] == numpy.__version__ and "blas" in info
    from tinytt import blas_threads
    assert info["cpu_threads"]["blas_work_in_threads"] == blas_threads.cooperative()
    assert "workers" in run(["info"], capsys)[1]


def test_python_dash_m_works():
    res = subprocess.run([sys.executable, "-m", "tinytt", "info"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert res.returncode == 0, res.stderr
    assert "tinytt" in res.stdout


@pytest.mark.slow
def test_demo_runs_and_perplexity_falls(capsys):
    res = cli.run_demo(show_progress=False)
    out = capsys.readouterr().out
    assert "valid ppl" in out and "What it shows" in out
    dense, tt_ = res["results"]
    for r in (dense, tt_):
        assert r["train_ppl_last"] < r["train_ppl_first"]
        assert r["valid_perplexity"] < res["vocab_size"]
    assert tt_["compression"] > 10
    assert tt_["valid_perplexity"] < 2.0 * dense["valid_perplexity"]
    assert res["seconds"] < 180


# ----------------------------------------------------------------------------- reviewer's bugs
T_TSV = "0\tgood movie\n1\tbad movie\n0\tgreat film\n1\tawful film\n0\tnice one\n1\tdull one\n"
TINY = ["--emb-dim", "8", "--hidden", "8", "--batch-size", "4", "--no-progress"]


def _trained_epochs(err):
    return [ln for ln in err.splitlines() if ln.startswith("epoch ")]


def test_save_to_a_directory_is_refused_before_training(tmp_path, capsys):
    # trained a whole epoch, then IsADirectoryError (exit 1)
    (tmp_path / "t.tsv").write_text(T_TSV)
    code, _, err = run(["train", "--train", str(tmp_path / "t.tsv"), "--epochs", "1", "--save", str(tmp_path)]
                       + TINY, capsys)
    assert code == 2 and "--save" in err and "is a directory" in err
    assert not _trained_epochs(err)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo (POSIX)")
@pytest.mark.parametrize("gz", [False, True])
def test_train_and_eval_read_fifos(tmp_path, capsys, gz):
    # a FIFO (or <(cat t.tsv), /dev/stdin from a pipe) was refused: "does not exist"
    payload = gzip.compress(T_TSV.encode()) if gz else T_TSV.encode()

    def fifo(name):
        path = tmp_path / name
        os.mkfifo(path)
        threading.Thread(target=path.write_bytes, args=(payload,), daemon=True).start()
        return str(path)

    ck = str(tmp_path / "ck.npz")
    code, out, err = run(["train", "--train", fifo("train"), "--epochs", "1", "--save", ck, "--json"] + TINY,
                         capsys)
    assert code == 0, err
    assert json.loads(out)["num_train"] == 5    # 6 examples, 1 carved for validation
    code, out, err = run(["eval", "--checkpoint", ck, "--test", fifo("test"), "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["n"] == 6
    os.mkfifo(tmp_path / "ck_fifo")   # a checkpoint (a zip, read with seeks) must be a regular file
    code, _, err = run(["eval", "--checkpoint", str(tmp_path / "ck_fifo"), "--test", ck], capsys)
    assert code == 2 and "not a regular file" in err


def test_resume_on_data_with_another_class_count(tmp_path, capsys):
    # the file gained a class: load_state_dict's shape-mismatch traceback (exit 1)
    data = tmp_path / "t.tsv"
    data.write_text(T_TSV + "2\tso-so film\n")
    ck = str(tmp_path / "ck.npz")
    code, _, err = run(["train", "--train", str(data), "--epochs", "1", "--save", ck] + TINY, capsys)
    assert code == 0, err
    data.write_text(T_TSV + "2\tso-so film\n3\tmixed film\n")
    code, _, err = run(["train", "--resume", ck, "--epochs", "2", "--no-progress"], capsys)
    assert code == 2 and "trained with 3 classes" in err and "(4 classes)" in err
    assert not _trained_epochs(err)
    data.write_text(T_TSV)   # fewer classes than the checkpoint: its 3 outputs still fit the labels
    code, out, err = run(["train", "--resume", ck, "--epochs", "2", "--json", "--no-progress"], capsys)
    assert code == 0, err
    assert json.loads(out)["config"]["num_classes"] == 3


def test_training_split_empty_after_carving(tmp_path, capsys):
    # 3 examples, --valid-fraction 0.9: 0 steps and "training loss is nan ... try a smaller --lr"
    data = tmp_path / "three.tsv"
    data.write_text(T_TSV[:T_TSV.index("0\tgreat")] + "0\tgreat film\n")
    code, _, err = run(["train", "--train", str(data), "--valid-fraction", "0.9", "--epochs", "1"] + TINY, capsys)
    assert code == 2 and "--valid-fraction 0.9" in err and "training split is empty" in err
    text = tmp_path / "lm.txt"
    text.write_text("a b c d e\n" * 5)   # 30 tokens, 27 carved for validation
    code, _, err = run(["train", "--task", "lm", "--train", str(text), "--valid-fraction", "0.9", "--epochs", "1"]
                       + TINY, capsys)
    assert code == 2 and "--valid-fraction 0.9" in err


def test_cr_line_ends_and_byte_order_mark_via_the_cli(tmp_path, capsys):
    cr = tmp_path / "cr.tsv"
    cr.write_bytes(T_TSV.replace("\n", "\r").encode())   # every example merged into one before
    bom = tmp_path / "bom.tsv"
    bom.write_bytes(b"\xef\xbb\xbf" + T_TSV.encode())      # "label must be an integer, got '\ufeff0'"
    for path in (cr, bom):
        code, out, err = run(["train", "--train", str(path), "--epochs", "1", "--json"] + TINY, capsys)
        assert code == 0, err
        assert json.loads(out)["num_train"] == 5


def test_resume_with_a_relative_path_of_the_same_file_is_no_change(tmp_path, capsys, monkeypatch):
    (tmp_path / "t.tsv").write_text(T_TSV)
    monkeypatch.chdir(tmp_path)
    code, _, err = run(["train", "--train", "t.tsv", "--epochs", "1", "--save", "ck.npz"] + TINY, capsys)
    assert code == 0, err
    code, _, err = run(["train", "--resume", "ck.npz", "--train", "./t.tsv", "--epochs", "2", "--no-progress"],
                       capsys)
    assert code == 0, err
    assert "ignoring" not in err   # was "note: ... ignoring --train" (the checkpoint stores the absolute path)
    (tmp_path / "other.tsv").write_text(T_TSV)
    code, _, err = run(["train", "--resume", "ck.npz", "--train", "other.tsv", "--epochs", "2", "--no-progress"],
                       capsys)
    assert code == 0 and "ignoring --train" in err


def test_resume_with_fewer_epochs_than_already_run(tmp_path, capsys):
    # was accepted: "resuming ... after epoch 2 of 1" and contradictory JSON
    (tmp_path / "t.tsv").write_text(T_TSV)
    ck = str(tmp_path / "ck.npz")
    code, _, err = run(["train", "--train", str(tmp_path / "t.tsv"), "--epochs", "2", "--save", ck] + TINY, capsys)
    assert code == 0, err
    code, _, err = run(["train", "--resume", ck, "--epochs", "1", "--no-progress"], capsys)
    assert code == 2 and "--epochs 1" in err and "already run 2 epochs" in err
    assert not _trained_epochs(err) and "resuming" not in err
    code, out, err = run(["train", "--resume", ck, "--epochs", "2", "--json", "--no-progress"], capsys)
    assert code == 0 and json.loads(out)["epochs_run"] == 2   # nothing left to run is fine


def test_download_uses_present_files(tmp_path, capsys, monkeypatch):
    # --download failed for sst2/sst5/mr even with the data present and TINYTT_DATA set
    for split in ("train", "dev", "test"):
        path = tmp_path / "sst2" / f"{split}.tsv"
        path.parent.mkdir(exist_ok=True)
        path.write_text(T_TSV)
    monkeypatch.setenv("TINYTT_DATA", str(tmp_path))
    code, out, err = run(["train", "--dataset", "sst2", "--download", "--epochs", "1", "--json"] + TINY, capsys)
    assert code == 0, err
    assert json.loads(out)["num_train"] == 6


def test_invalid_environment_variables(tsv, capsys, monkeypatch):
    # TINYTT_NUM_THREADS=two: the data was loaded, then a traceback at the first step
    monkeypatch.setenv("TINYTT_NUM_THREADS", "two")
    for argv in (["train", "--train", tsv["train"], "--epochs", "1"] + SMALL, ["demo", "--steps", "1"]):
        code, _, err = run(argv, capsys)
        assert code == 2 and "TINYTT_NUM_THREADS" in err and "'two'" in err
        assert not _trained_epochs(err)
    # info, the diagnostic command, reported it with a traceback of its own
    monkeypatch.setenv("TINYTT_NUM_THREADS", "0")
    code, out, _ = run(["info"], capsys)
    assert code == 0 and "TINYTT_NUM_THREADS must be a positive integer, got '0'" in out
    code, out, _ = run(["info", "--json"], capsys)
    info = json.loads(out)
    assert code == 0 and info["cpu_threads"]["workers"] is None and "TINYTT_NUM_THREADS" in info["env_errors"][0]
    monkeypatch.delenv("TINYTT_NUM_THREADS")


def test_an_invalid_backend_variable_fails_the_import_naming_it():
    # applied at import (tinytt.backend): a real process, not this test's imported tinytt
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    env = dict(os.environ, TINYTT_BACKEND="bogus")
    proc = subprocess.run([sys.executable, "-m", "tinytt", "info"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0 and "TINYTT_BACKEND='bogus'" in proc.stderr


def test_labels_above_the_class_limit(tmp_path, capsys):
    # 10**20: OverflowError traceback; 1000000: silently a 1,000,001-class model
    for label in ("1000000", str(10 ** 20)):
        data = tmp_path / "big.tsv"
        data.write_text(T_TSV + f"{label}\tstray\n")
        code, _, err = run(["train", "--train", str(data), "--epochs", "1"] + TINY, capsys)
        assert code == 2 and str(data) in err and "line 7" in err and "MAX_CLASSES" in err


def test_eval_refuses_a_checkpoint_its_config_cannot_rebuild(tsv, tmp_path, capsys):
    from tinytt.data import Vocab
    from tinytt.models import build_model
    from tinytt.train import save_checkpoint

    vocab = Vocab(["<pad>", "<unk>", "good", "bad"])
    cfg = {"task": "classify", "model": "mlp", "emb_dim": 4, "hidden": 4}
    model = build_model(cfg, len(vocab), 2)
    no_classes = str(tmp_path / "no_classes.npz")
    save_checkpoint(no_classes, model, None, vocab, cfg, 1, [])
    code, out, err = run(["eval", "--checkpoint", no_classes, "--test", tsv["test"]], capsys)
    assert code == 2 and "has no 'num_classes'" in err and "Traceback" not in err
    mismatch = str(tmp_path / "mismatch.npz")
    save_checkpoint(mismatch, model, None, vocab, dict(cfg, num_classes=2, hidden=5), 1, [])
    code, out, err = run(["eval", "--checkpoint", mismatch, "--test", tsv["test"]], capsys)
    assert code == 2 and "--checkpoint" in err and "fc1.weight" in err
    ok = str(tmp_path / "ok.npz")
    save_checkpoint(ok, model, None, vocab, dict(cfg, num_classes=2), 1, [])
    code, out, err = run(["eval", "--checkpoint", ok, "--test", tsv["test"], "--json"], capsys)
    assert code == 0, err
    assert 0.0 <= json.loads(out)["test_accuracy"] <= 1.0


def test_save_onto_a_data_file_is_refused(tsv, tmp_path, capsys):
    victim = tmp_path / "victim.tsv"
    victim.write_text(open(tsv["train"]).read())
    before = victim.read_bytes()
    for flag in ("--train", "--test"):
        argv = ["train", "--train", tsv["train"] if flag == "--test" else str(victim), "--save", str(victim),
                "--epochs", "1"] + SMALL
        if flag == "--test":
            argv += ["--test", str(victim)]
        code, out, err = run(argv, capsys)
        assert code == 2 and f"the {flag} data file" in err
    assert victim.read_bytes() == before


def test_partial_checkpoint_configs_are_completed_aloud(tsv, tmp_path, capsys):
    """A checkpoint the Python API wrote with a partial config: eval and --resume use tinytt
    train's defaults for the missing keys and say so (a missing readout changed the model
    silently; a missing training key ended --resume in a KeyError)."""
    from tinytt.data import Vocab
    from tinytt.models import build_model
    from tinytt.train import save_checkpoint

    vocab = Vocab(["<pad>", "<unk>", "good", "bad"])
    cfg = {"task": "classify", "model": "lstm", "emb_dim": 4, "hidden": 4, "num_classes": 2, "train": tsv["train"]}
    ck = str(tmp_path / "partial.npz")
    save_checkpoint(ck, build_model(cfg, len(vocab), 2), None, vocab, cfg, 1, [])
    code, out, err = run(["eval", "--checkpoint", ck, "--test", tsv["test"]], capsys)
    assert code == 0, err
    assert "lacks readout" in err and "readout='mean'" in err
    assert "lacks max_len; evaluating on whole texts" in err
    code, out, err = run(["train", "--resume", ck, "--epochs", "2", "--no-progress", "--json"], capsys)
    assert code == 0, err
    assert "lacks" in err and "valid_fraction=0.1" in err and "epoch 2/2" in err and json.loads(out)
    no_data = str(tmp_path / "no_data.npz")
    save_checkpoint(no_data, build_model(cfg, len(vocab), 2), None, vocab, {k: v for k, v in cfg.items() if k != "train"},
                    1, [])
    code, out, err = run(["train", "--resume", no_data, "--epochs", "2", "--no-progress"], capsys)
    assert code == 2 and "names no data" in err


def test_classes_without_training_examples_are_noted(tsv, tmp_path, capsys):
    """The class count comes from the labels of every split: a label seen only in --test, or a
    one-class training file, gives output classes that are never trained; say so."""
    test3 = tmp_path / "test3.tsv"
    test3.write_text(open(tsv["test"]).read() + "2\tgood plot\n")
    code, out, err = run(["train", "--train", tsv["train"], "--test", str(test3), "--epochs", "1"] + SMALL, capsys)
    assert code == 0, err
    assert "note: the model has 3 classes (0..2) but the training data has no example of class 2" in err
    one = tmp_path / "one.tsv"
    one.write_text("".join(line for line in open(tsv["train"]) if line.startswith("1\t")))
    code, out, err = run(["train", "--train", str(one), "--epochs", "1"] + SMALL, capsys)
    assert code == 0, err
    assert "no example of class 0" in err
    code, out, err = run(["train", "--train", tsv["train"], "--test", tsv["test"], "--epochs", "1"] + SMALL, capsys)
    assert code == 0 and "no example of class" not in err
