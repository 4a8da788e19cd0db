"""Settings a process cannot use are refused when they are read (``gateway/settings.py``), in
one ``invalid settings`` line and exit 2 (tests/clients/test_cli.py runs that end to end), never
by a failure once the pod runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.settings import Settings


def refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> str:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        Settings()
    monkeypatch.delenv(name)
    return str(caught.value)


def test_the_idempotency_ttl_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """99999999999999999 was accepted, then failed every append with a key after writing its
    events (a 500; a retry appended them again)."""
    for value in ("99999999999999999", "2592001", "0"):
        assert "idempotency_ttl_seconds" in refused(
            monkeypatch, "DELTAGATE_IDEMPOTENCY_TTL_SECONDS", value
        )
    monkeypatch.setenv("DELTAGATE_IDEMPOTENCY_TTL_SECONDS", "2592000")
    assert Settings().log_limits.idempotency_ttl == 2592000


def test_no_float_setting_takes_inf_or_nan(monkeypatch: pytest.MonkeyPatch) -> None:
    """DELTAGATE_GRACE_PERIOD=inf and DELTAGATE_DRAIN_SECONDS=inf passed their bounds, then
    ``deltagate serve`` failed with an OverflowError (int(inf)) before it served. Every float
    setting, by one rule."""
    floats = [
        name
        for name, field in Settings.model_fields.items()
        if float in (field.annotation, *getattr(field.annotation, "__args__", ()))
    ]
    assert {"grace_period", "drain_seconds", "hot_retention_max_age_seconds"} <= set(floats)
    for name in floats:
        for value in ("inf", "-inf", "nan", "Infinity"):
            assert name in refused(monkeypatch, f"DELTAGATE_{name.upper()}", value), (name, value)


def test_durations_a_later_use_cannot_take_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """DELTAGATE_HOT_RETENTION_MAX_AGE_SECONDS=99999999999 was accepted, then every round of
    the lifecycle failed (a date that long ago is no date). It is bounded as a store's
    ``hotRetention.maxAgeSeconds`` is, by the same constant."""
    from broker import MAX_HOT_SECONDS, InvalidSettings, check_settings

    cases = {
        "DELTAGATE_HOT_RETENTION_MAX_AGE_SECONDS": ("99999999999", MAX_HOT_SECONDS),
        "DELTAGATE_GRACE_PERIOD": ("1e300", 86400),
        "DELTAGATE_DRAIN_SECONDS": ("1e300", 86400),
    }
    for name, (absurd, most) in cases.items():
        assert name.removeprefix("DELTAGATE_").lower() in refused(monkeypatch, name, absurd)
        refused(monkeypatch, name, str(most + 1))
        monkeypatch.setenv(name, str(most))
        Settings()
        monkeypatch.delenv(name)
    check_settings({"hotRetention": {"maxAgeSeconds": MAX_HOT_SECONDS}})
    with pytest.raises(InvalidSettings):
        check_settings({"hotRetention": {"maxAgeSeconds": MAX_HOT_SECONDS + 1}})
    monkeypatch.setenv("DELTAGATE_HOT_RETENTION_MAX_AGE_SECONDS", str(MAX_HOT_SECONDS))
    monkeypatch.setenv("DELTAGATE_ARCHIVE_URL", "postgresql://127.0.0.1/x")
    assert Settings().lifecycle_options.hot_seconds == MAX_HOT_SECONDS


def test_the_log_level_is_one_of_the_documented(monkeypatch: pytest.MonkeyPatch) -> None:
    """DELTAGATE_LOG_LEVEL=verbose was accepted, then ``serve`` and ``dispatcher`` failed at
    ``logging``'s ``ValueError: Unknown level`` with a traceback."""
    for value in ("verbose", "trace", "", "critical"):
        assert "log_level" in refused(monkeypatch, "DELTAGATE_LOG_LEVEL", value)
    for value, level in (("debug", "debug"), ("WARNING", "warning"), (" Error ", "error")):
        monkeypatch.setenv("DELTAGATE_LOG_LEVEL", value)
        assert Settings().log_level == level


def test_the_admin_key_file_is_read_with_the_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A key file read only when the pod started failed it with a traceback when it was not
    UTF-8 or could not be read, and an empty one started a pod without an admin key. It is read
    with the settings: each of those is a settings error naming the file."""
    latin, empty, good = tmp_path / "latin", tmp_path / "empty", tmp_path / "good"
    latin.write_bytes(b"caf\xe9\n")
    empty.write_text("\n\t \n")
    good.write_text("dg_from_a_file\n")
    for path, words in ((latin, "not UTF-8 text"), (empty, "holds no key")):
        assert f"DELTAGATE_ADMIN_KEY_FILE {path}: {words}" in refused(
            monkeypatch, "DELTAGATE_ADMIN_KEY_FILE", str(path)
        )

    def unreadable(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied")

    with monkeypatch.context() as patched:  # (root reads any file: chmod would prove nothing)
        patched.setattr(Path, "read_bytes", unreadable)
        assert "cannot read it: Permission denied" in refused(
            patched, "DELTAGATE_ADMIN_KEY_FILE", str(good)
        )
    monkeypatch.setenv("DELTAGATE_ADMIN_KEY_FILE", str(good))
    assert Settings().admin_secret == "dg_from_a_file"
    monkeypatch.setenv("DELTAGATE_ADMIN_KEY", "dg_from_the_environment")
    assert Settings().admin_secret == "dg_from_the_environment"


def test_allowed_origins_are_origins(monkeypatch: pytest.MonkeyPatch) -> None:
    """``https://good.example/`` (a trailing slash) was taken as it was written and matched no
    browser's Origin (refused with 4003); ``*.example.com`` and ``notaurl`` were accepted and
    matched nothing either. Each entry is now an origin, or the settings are refused."""
    for value in ("*.example.com", "notaurl", "localhost:3000", "https://a.example/app"):
        assert "not an origin" in refused(monkeypatch, "DELTAGATE_ALLOWED_ORIGINS", value), value
    monkeypatch.setenv("DELTAGATE_ALLOWED_ORIGINS", "https://Good.Example/, http://a.test:8080")
    assert Settings().origins == ["https://good.example", "http://a.test:8080"]


def test_variables_no_setting_reads_are_named() -> None:
    """A misspelt DELTAGATE_PROT left the port at its default without a word: serve and
    dispatcher now log the variables no setting reads, with the setting each resembles."""
    from gateway.settings import unknown_variables

    environ = {
        "DELTAGATE_PROT": "9000",
        "DELTAGATE_PORT": "9000",
        "DELTAGATE_URL": "http://127.0.0.1:8787",  # the CLI's, not a setting: not named
        "DELTAGATE_SOMETHING_ELSE": "x",
        "DELTAGATE_JS": "x",  # (resembled DELTAGATE_HOST when the prefix was compared too)
        "DELTAGATE_REDIS_ULR": "x",
        "PATH": "/bin",
    }
    # (one that resembles no setting is some tool's own: DELTAGATE_SEED_PAGE, the tests')
    assert unknown_variables(environ) == [
        "DELTAGATE_PROT (did you mean DELTAGATE_PORT?)",
        "DELTAGATE_REDIS_ULR (did you mean DELTAGATE_REDIS_URL?)",
    ]
