from __future__ import annotations

import os

import pytest

from ai_orchestrator.settings import Environment, Settings


def test_preload_is_read_as_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIO_PRELOAD", "a, b,,c")
    assert Settings().preload == ("a", "b", "c")


def test_production_defaults_turn_docs_off_and_logs_to_json() -> None:
    settings = Settings(env=Environment.PRODUCTION)
    assert settings.env is Environment.PRODUCTION
    assert settings.docs_enabled is False
    assert settings.log_json is True
    assert settings.log_level == "INFO"


def test_development_defaults_log_debug_text() -> None:
    settings = Settings(env=Environment.DEVELOPMENT)
    assert (settings.log_level, settings.log_json, settings.docs_enabled) == ("DEBUG", False, True)


def test_explicit_value_wins_over_environment_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIO_ENV", "production")
    monkeypatch.setenv("AIO_DOCS_ENABLED", "true")
    monkeypatch.setenv("AIO_LOG_LEVEL", "warning")
    settings = Settings()
    assert settings.docs_enabled is True
    assert settings.log_level == "WARNING"


def test_unknown_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIO_ENV", "moon")
    with pytest.raises(ValueError, match="env"):
        Settings()


def test_environment_defaults_apply_when_env_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIO_ENV", "production")
    assert Settings().docs_enabled is False


def test_settings_see_defaults_whatever_aio_variables_the_shell_exports() -> None:
    # tests/conftest.py removes every AIO_* variable before each test.
    assert not [name for name in os.environ if name.startswith("AIO_")]
    assert Settings().preload == ()
