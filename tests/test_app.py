"""The Streamlit app, driven like a user would with AppTest."""

from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[1] / "app.py"
AppTest = pytest.importorskip("streamlit.testing.v1").AppTest


def run_app():
    at = AppTest.from_file(str(APP), default_timeout=60)
    return at.run()


def test_lake_page_renders_the_optimal_value():
    at = run_app()
    assert not at.exception
    # 4x4 deterministic, gamma 0.95: the goal is 6 moves away, V* = 0.95^5
    assert at.metric[0].value == f"{0.95**5:.4f}"


def test_changing_widgets_changes_the_values():
    at = run_app()
    at.selectbox(key="preset").select("two-paths").run()
    assert at.metric[0].value == f"{0.95**7:.4f}"  # 8 moves
    at.checkbox(key="slippery").check().run()
    at.slider(key="gamma").set_value(1.0).run()
    assert not at.exception
    assert at.metric[1].value == "1.0000"  # undiscounted: the goal is always reached


def test_invalid_custom_map_shows_lakelab_error():
    at = run_app()
    at.radio(key="source").set_value("custom").run()
    at.text_area(key="map").input("SFX\nFFG").run()
    assert not at.exception
    assert "unknown character 'X' at row 0, column 2" in at.error[0].value
