"""What the panel shows for the parameter node's state, decided outside Qt so that the module's widget
only applies it: which controls of both sections are enabled and visible, the whole-sequence option,
the save-as name to suggest, and the method that follows the input: a frame of a sequence (of at
least 10 frames), denoised whole, switches the default method (Pretrained R2R) to the series default
(MP-PCA), and a plain volume switches MP-PCA back, as the library's defaults do (method_rules.default_method).

>>> view = panel_view(parameterNode, previous_suggestion="", was_series=False)
>>> for name, enabled in view.enabled.items(): widgets[name].enabled = enabled
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from DeepDenoiseLib.denoise.method_rules import SERIES_DEFAULT_METHOD, default_method
from DeepDenoiseLib.slicer.panel import (
    SERIES_DEFAULT,
    VOLUME_DEFAULT,
    enabled_settings,
    parameters_for_method,
    sequence_option_text,
    sequence_to_run,
    suggested_model_name,
    updated_model_name,
    visible_settings,
)
from DeepDenoiseLib.slicer.sequences import sequence_of_proxy
from DeepDenoiseLib.slicer.superres_panel import superres_enabled_settings, superres_visible_settings


@dataclass
class PanelView:
    """The panel for one state: ``enabled`` and ``visible`` by parameter name (plus ``savedModel``);
    ``sequence_option`` the whole-sequence checkbox's text when the input is the frame in view of a
    sequence (None: hidden); ``sequence_outputs`` whether the note on a sequence's outputs shows;
    ``model_name`` the save-as name to set (None: keep it) and ``suggestion`` the name suggested;
    ``parameters`` what to set in the parameter node (the method that follows the input, and what it
    sets with it); ``series`` whether the run would denoise a sequence."""

    enabled: dict[str, bool] = field(default_factory=dict)
    visible: dict[str, bool] = field(default_factory=dict)
    sequence_option: Optional[str] = None
    sequence_outputs: bool = False
    model_name: Optional[str] = None
    suggestion: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    series: bool = False


def panel_view(state: Any, previous_suggestion: str, was_series: bool = False) -> PanelView:
    """The view of ``state`` (the parameter node); ``previous_suggestion`` is the save-as name
    suggested last, which follows the input and the method until the user types a name of their own;
    ``was_series`` whether the previous view's run denoised a sequence (the method follows the input
    only when that changes, so a method chosen for a sequence stays)."""
    sequence = sequence_to_run(state)
    series = sequence is not None
    method = state.method
    long_enough = sequence is not None and default_method(True, sequence.GetNumberOfDataNodes()) == SERIES_DEFAULT_METHOD
    if long_enough and not was_series and method == VOLUME_DEFAULT:
        method = SERIES_DEFAULT
    elif not series and method == SERIES_DEFAULT:
        method = VOLUME_DEFAULT
    parameters = {"method": method, **parameters_for_method(method)} if method != state.method else {}
    state = _Pending(state, parameters)  # the view below shows the state as it will be
    frame_of = sequence_of_proxy(state.inputVolume)
    view = PanelView(
        enabled={**enabled_settings(state), **superres_enabled_settings(state)},
        visible={**visible_settings(state), **superres_visible_settings(state)},
        sequence_option=sequence_option_text(frame_of) if frame_of is not None else None,
        sequence_outputs=series,
        suggestion=previous_suggestion,
        parameters=parameters,
        series=series,
    )
    source = sequence or state.inputVolume
    if source is not None:
        view.suggestion = suggested_model_name(source.GetName(), state.method)
        name = updated_model_name(state.saveModelName, previous_suggestion, view.suggestion)
        view.model_name = name if name != state.saveModelName else None
    return view


class _Pending:
    """``state`` read as it will be once ``changes`` are set in it."""

    def __init__(self, state: Any, changes: dict[str, Any]) -> None:
        self._state, self._changes = state, changes

    def __getattr__(self, name: str) -> Any:
        return self._changes[name] if name in self._changes else getattr(self._state, name)
