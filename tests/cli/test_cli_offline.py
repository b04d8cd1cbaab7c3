"""The CLI without a server: refusing a token on the command line, the help's exit codes,
the token file, reading feedback files, and reading an input schema from a model."""

from __future__ import annotations

import io

import pytest

from tests.cli.support import credentials, feedback, main, schema
from tests.portal_fixtures import FEATURES

TOKEN = "mg_" + "A" * 40


@pytest.fixture(autouse=True)
def no_machine_token(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("MODELGATE_TOKEN", "MODELGATE_TOKEN_FILE", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("argv", [
    ["versions", "--token", TOKEN], ["versions", f"--token={TOKEN}"],
    ["wait", "--password", "secret"], ["status", "--request", "1", TOKEN],
    ["--api-key", "x", "versions"]])
def test_a_secret_on_the_command_line_is_refused_with_the_reason(argv, capsys):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "refusing to run" in err and "shell's history" in err
    assert "MODELGATE_TOKEN" in err and "modelgate login" in err


def test_help_documents_every_exit_code_and_the_scopes(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for code in range(9):
        assert f"\n  {code}  " in out
    assert "approve  promote, approve" in out and "MODELGATE_TOKEN" in out


def test_no_token_says_where_to_put_one(capsys):
    assert main(["versions", "--url", "http://127.0.0.1:9"]) == 1
    assert "no token: set MODELGATE_TOKEN" in capsys.readouterr().err


def test_the_token_file_is_private_and_read_back(tmp_path, monkeypatch):
    path = tmp_path / "deep" / "token"
    monkeypatch.setenv("MODELGATE_TOKEN_FILE", str(path))
    path.parent.mkdir()
    path.write_text("old")
    path.chmod(0o644)
    credentials.save_token(TOKEN)
    assert path.stat().st_mode & 0o777 == 0o600
    assert credentials.load_token() == (TOKEN, str(path))
    monkeypatch.setenv("MODELGATE_TOKEN", "from-env")
    assert credentials.load_token() == ("from-env", "MODELGATE_TOKEN")


def test_an_unreachable_server_is_retried_then_exit_8(capsys, monkeypatch):
    monkeypatch.setenv("MODELGATE_TOKEN", TOKEN)
    assert main(["versions", "--url", "http://127.0.0.1:9", "--retry-for", "1.2"]) == 8
    err = capsys.readouterr().err
    assert "could not be reached" in err and "gave up after retrying" in err


def test_feedback_files_are_read_with_their_errors_named():
    csv = io.StringIO("prediction_id,outcome,extra\nabc,1,x\ndef,0.5,y\nghi,true,z\n")
    assert feedback.read_items(csv, "csv") == [
        {"prediction_id": "abc", "outcome": 1}, {"prediction_id": "def", "outcome": 0.5},
        {"prediction_id": "ghi", "outcome": True}]
    with pytest.raises(feedback.FeedbackFileError, match="line 2: outcome 'yes'"):
        feedback.read_items(io.StringIO("prediction_id,outcome\nabc,yes\n"), "csv")
    with pytest.raises(feedback.FeedbackFileError, match="no outcome column"):
        feedback.read_items(io.StringIO("prediction_id,result\nabc,1\n"), "csv")
    lines = io.StringIO('{"prediction_id": "a", "outcome": 1}\n\n{"prediction_id": "b"}\n')
    with pytest.raises(feedback.FeedbackFileError, match="line 3"):
        feedback.read_items(lines, "jsonl")


def test_the_input_schema_is_read_from_a_skops_model(tmp_path, skops_bytes, pickle_bytes,
                                                      fitted_classifier):
    path = tmp_path / "model.skops"
    path.write_bytes(skops_bytes)
    assert schema.infer_input_schema(path) == [{"name": f, "type": "double"} for f in FEATURES]
    pickled = tmp_path / "model.pkl"
    pickled.write_bytes(pickle_bytes)
    with pytest.raises(schema.SchemaInferenceError, match="--allow-pickle"):
        schema.infer_input_schema(pickled)
    assert len(schema.infer_input_schema(pickled, allow_pickle=True)) == len(FEATURES)

    class Unnamed:
        n_features_in_ = 3

    assert [f["name"] for f in schema.schema_of(Unnamed())] == ["x0", "x1", "x2"]
    with pytest.raises(schema.SchemaInferenceError, match="neither feature_names_in_"):
        schema.schema_of(object())


def test_the_input_schema_is_read_from_xgboost_and_lightgbm_files(tmp_path, cancer_frame,
                                                                   pickle_bytes):
    import lightgbm
    import xgboost

    frame, target = cancer_frame[FEATURES], cancer_frame["target"]
    xgboost.XGBClassifier(n_estimators=2, max_depth=2).fit(frame, target) \
        .save_model(tmp_path / "m.json")
    lightgbm.LGBMRegressor(n_estimators=2, num_leaves=3, verbose=-1) \
        .fit(frame.to_numpy(), target).booster_.save_model(tmp_path / "m.txt")
    assert schema.infer_input_schema(tmp_path / "m.json") == [
        {"name": f, "type": "double"} for f in FEATURES]
    # Fitted on an array: LightGBM's made-up Column_0... are no names.
    assert [f["name"] for f in schema.infer_input_schema(tmp_path / "m.txt")] == [
        "x0", "x1", "x2", "x3", "x4"]
    disguised = tmp_path / "model.json"  # a pickle by its bytes: never unpickled here
    disguised.write_bytes(pickle_bytes)
    with pytest.raises(schema.SchemaInferenceError, match="could not be read with skops"):
        schema.infer_input_schema(disguised)


def test_triggered_by_names_the_retraining_trigger_in_the_metadata():
    """``register --triggered-by 12`` sends the metadata key the portal links (decision 67)."""
    from modelgate_cli.cli import build_parser
    from modelgate_cli.commands import metadata_of

    args = build_parser().parse_args(["register", "model.skops", "--project", "clinical-ml",
                                      "--model", "tumor-classifier", "--triggered-by", "12"])
    assert metadata_of(args)["triggered_by"] == 12
    plain = build_parser().parse_args(["register", "model.skops", "--project", "clinical-ml",
                                       "--model", "tumor-classifier"])
    assert "triggered_by" not in metadata_of(plain)
