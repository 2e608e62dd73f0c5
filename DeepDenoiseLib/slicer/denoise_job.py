"""A denoising job on a volume node: the worker process trains (or applies a saved model) on the node's
voxels written to a temporary folder, and the result goes into the scene only if it succeeded.

>>> settings = PanelSettings(method="N2V2", modality="CT", budget_minutes=2, test_time_augmentation=True)
>>> job = NodeDenoiseJob(input_node, settings.to_config(), compute_uncertainty=True)
>>> job.start()
>>> job.wait(on_event=print)
>>> result = job.finish()          # the scene changes here, and only if the worker succeeded
>>> result.output_node.GetName()
'MRHead denoised'
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np

from DeepDenoiseLib.core.validation import InputError
from DeepDenoiseLib.denoise.config import DenoiseConfig
from DeepDenoiseLib.denoise.method_rules import PAIRED_METHODS, check_uncertainty_request
from DeepDenoiseLib.denoise.model_folder import is_model_name
from DeepDenoiseLib.slicer.background import BackgroundRun, make_work_folder
from DeepDenoiseLib.slicer.nodes import (
    check_same_grid,
    check_scalar_volume,
    check_volume_content,
    ijk_to_ras,
    write_node,
)
from DeepDenoiseLib.slicer.worker_commands import (
    PathLike,
    apply_command,
    denoise_command,
    noise2noise_command,
    supervised_command,
    worker_environment,
)
from DeepDenoiseLib.slicer.worker_job import JobResult, WorkerJob


class NodeDenoiseJob(WorkerJob):
    """Denoises one volume node in a worker process; the scene changes only when the worker succeeded.

    :meth:`start` writes the input and the configuration to a temporary folder and starts the worker;
    :meth:`poll` (from a timer) or :meth:`wait` (from a script) follow it; :meth:`finish` reads the
    result into the output node (a new one next to the input unless ``output_node`` is given) and the
    optional residual and uncertainty nodes, or raises :class:`WorkerError` /
    :class:`~DeepDenoiseLib.core.progress.Cancelled` with the scene untouched. The temporary folder is
    removed whatever happens, by :meth:`finish` or :meth:`cancel`.

    The uncertainty is the per-voxel spread across test-time augmentations (and slice orientations),
    so it needs ``config.prediction.tta``. ``worker`` replaces the ``python -m DeepDenoiseLib``
    command prefix; ``python`` is the interpreter for it (``PythonSlicer`` inside Slicer).

    With ``model_path`` the worker applies that saved model (``deepdenoise apply``) instead of
    training one; ``config`` may then be None, and otherwise only its test-time augmentation and
    device are used. ``save_model_path`` saves the model a training run makes (denoise/model_file.py).
    Both take a path ending in ``.safetensors`` or a name in the per-user model folder, as the
    command line does.
    Sequence nodes (4D) go through :class:`~DeepDenoiseLib.slicer.sequences.SequenceDenoiseJob`.
    With ``second_input_node``, a second acquisition of the same anatomy on the same grid, the job
    runs Noise2Noise on the two (``config.method`` must be ``noise2noise``); the residual is then
    the two acquisitions' mean minus the result. With ``training_noisy_node`` and
    ``training_clean_node``, a (noisy, clean) pair on one grid (any grid: the input's may differ),
    it trains a network on that pair and denoises the input with it (``config.method`` must be
    ``supervised``). The paired methods keep no model (``save_model_path`` is refused).
    """

    #: Whether Noise2Noise may run on the input alone (a 4D series pairs its neighbouring frames).
    NOISE2NOISE_ON_INPUT_ALONE = False

    def __init__(
        self,
        input_node: Any,
        config: Optional[DenoiseConfig],
        output_node: Optional[Any] = None,
        residual_node: Optional[Any] = None,
        compute_residual: bool = False,
        uncertainty_node: Optional[Any] = None,
        compute_uncertainty: bool = False,
        python: Optional[str] = None,
        worker: Optional[Sequence[str]] = None,
        library_parent: Optional[PathLike] = None,
        temp_parent: Optional[PathLike] = None,
        model_path: Optional[PathLike] = None,
        save_model_path: Optional[PathLike] = None,
        second_input_node: Optional[Any] = None,
        training_noisy_node: Optional[Any] = None,
        training_clean_node: Optional[Any] = None,
    ) -> None:
        self.input_node = input_node
        self.second_input_node = second_input_node
        self.training_noisy_node = training_noisy_node
        self.training_clean_node = training_clean_node
        self.config = config
        self.output_node = output_node
        self.residual_node = residual_node
        self.compute_residual = compute_residual or residual_node is not None
        self.uncertainty_node = uncertainty_node
        self.compute_uncertainty = compute_uncertainty or uncertainty_node is not None
        self.python = python
        self.worker = worker
        self.library_parent = library_parent if library_parent is not None else Path(__file__).resolve().parents[2]
        self.temp_parent = temp_parent
        self.model_path = model_path
        self.save_model_path = save_model_path
        self.folder: Optional[Path] = None
        self.run: Optional[BackgroundRun] = None
        self._grid: Any = None
        self._shape: tuple[int, ...] = ()

    @property
    def tta(self) -> bool:
        return self.config is not None and self.config.prediction.tta

    def start(self) -> None:
        """Check the nodes and settings, write the input and configuration, and start the worker."""
        self._check_input()
        if self.input_node.GetScene() is None:
            raise InputError(f"'{self.input_node.GetName()}' is not in a scene")
        self._check_outputs()
        self._check_settings()
        self._check_pairing()
        self._check_content()
        self._remember_grid()
        self.folder = make_work_folder(self.temp_parent)
        try:
            input_path = self.folder / f"input{self.FILE_EXTENSION}"
            self._write_input(input_path)
            for name, node in self._pair_inputs().items():
                write_node(node, self._input_path(name))
            self.run = BackgroundRun(self._command(input_path), environment=worker_environment(self.library_parent), cwd=self.folder)
        except BaseException:
            self._remove_folder()
            raise

    def _pair_inputs(self) -> dict[str, Any]:
        """The volumes besides the input that the worker gets, by file name: the second acquisition,
        the training pair."""
        nodes = {
            "second": self.second_input_node,
            "training_noisy": self.training_noisy_node,
            "training_clean": self.training_clean_node,
        }
        return {name: node for name, node in nodes.items() if node is not None}

    def _input_path(self, name: str) -> Path:
        assert self.folder is not None
        return self.folder / f"{name}{self.FILE_EXTENSION}"

    def _check_pairing(self) -> None:
        """A second acquisition goes with Noise2Noise only, and must lie on the input's grid; a
        training pair goes with Supervised only, and its two volumes must lie on one grid."""
        second = self.second_input_node
        pair = (self.training_noisy_node, self.training_clean_node)
        if self.config is None or self.model_path is not None:
            if self._pair_inputs():
                raise ValueError("a saved model denoises one volume; a second acquisition or a training pair is for training")
            return
        method = self.config.method
        if method in PAIRED_METHODS and self.save_model_path is not None:
            raise ValueError(f"method '{method}' keeps no model: saving is for the single-volume methods")
        if second is not None and method != "noise2noise":
            raise ValueError(f"a second acquisition is for method noise2noise; method '{method}' denoises one volume")
        if any(node is not None for node in pair) and method != "supervised":
            raise ValueError(f"a training pair is for method supervised; method '{method}' does not learn from clean volumes")
        if method == "noise2noise" and second is None and not self.NOISE2NOISE_ON_INPUT_ALONE:
            raise ValueError(
                "method 'noise2noise' learns from pairs of volumes: give the second acquisition "
                "(another scan of the same anatomy on the same grid)"
            )
        if method == "supervised" and None in pair:
            raise ValueError("method 'supervised' learns from pairs of volumes: give the training noisy volume and its clean partner")
        if second is not None:
            check_scalar_volume(second, "second acquisition")
            if second is self.input_node:
                raise InputError("the second acquisition must be another volume than the first")
            check_same_grid(second, self.input_node)
        if method == "supervised":
            noisy, clean = pair
            check_scalar_volume(noisy, "training noisy volume")
            check_scalar_volume(clean, "training clean volume")
            if noisy is clean:
                raise InputError("the training noisy and clean volumes must be two different volumes")
            check_same_grid(clean, noisy)

    # --- Steps a sequence job does its own way ---

    def _check_input(self) -> None:
        check_scalar_volume(self.input_node)

    def _check_content(self) -> None:
        """The voxels of every input, as the worker would check them (:func:`check_volume_content`)."""
        import slicer

        config = None if self.model_path is not None else self.config
        for node in [self.input_node, *self._pair_inputs().values()]:
            check_volume_content(slicer.util.arrayFromVolume(node), config, node.GetName())

    def _check_outputs(self) -> None:
        outputs = {
            "output volume": self.output_node,
            "residual volume": self.residual_node,
            "uncertainty volume": self.uncertainty_node,
        }
        for role, node in outputs.items():
            if node is None:
                continue
            if node is self.input_node or any(node is other for other in self._pair_inputs().values()):
                raise InputError(f"the {role} must differ from the input volumes; choose or create another one")
            if node.IsA("vtkMRMLLabelMapVolumeNode") or not node.IsA("vtkMRMLScalarVolumeNode"):
                raise InputError(f"the {role} '{node.GetName()}' must be a scalar volume")
        chosen = [(role, node) for role, node in outputs.items() if node is not None]
        for index, (role, node) in enumerate(chosen):
            for other_role, other in chosen[index + 1 :]:
                if node is other:
                    raise InputError(f"the {role} and the {other_role} must be different nodes")

    def _remember_grid(self) -> None:
        """The grid as the worker sees it, kept apart from the input node in case that changes meanwhile."""
        import slicer

        self._grid = slicer.vtkMRMLScalarVolumeNode()
        self._grid.CopyOrientation(self.input_node)
        self._shape = tuple(self.input_node.GetImageData().GetDimensions()[::-1])

    def _write_input(self, path: Path) -> None:
        write_node(self.input_node, path)

    def _read_results(self, run: BackgroundRun) -> dict[str, np.ndarray]:
        """The worker's result arrays on the input's grid, by name; WorkerError if any is unusable."""
        return self._read_on_grid(run, self._result_names(), ijk_to_ras(self._grid), f"the input has {self._shape}")

    def _store_results(self, arrays: dict[str, np.ndarray], summary: dict[str, Any]) -> JobResult:
        grid = self._grid
        result = JobResult(self._store(self.output_node, arrays["output"], "denoised", grid, display_like=self.input_node), summary=summary)
        if "residual" in arrays:
            result.residual_node = self._store(self.residual_node, arrays["residual"], "residual", grid)
        if "uncertainty" in arrays:
            result.uncertainty_node = self._store(self.uncertainty_node, arrays["uncertainty"], "uncertainty", grid)
        return result

    # --- Shared steps ---

    def _check_settings(self) -> None:
        if self.model_path is None and self.config is None:
            raise ValueError("a denoising job needs a configuration, or a saved model to apply (model_path)")
        if self.model_path is not None and self.save_model_path is not None:
            raise ValueError("a job that applies a saved model trains none, so it has no model to save")
        check_uncertainty_request(self.compute_uncertainty, self.tta, "prediction.tta", "leave the uncertainty volume out")

    def _command(self, input_path: Path) -> list[str]:
        assert self.folder is not None
        residual = self._result_path("residual") if self.compute_residual else None
        uncertainty = self._result_path("uncertainty") if self.compute_uncertainty else None
        if self.model_path is not None:
            device = None if self.config is None else self.config.training.device
            return apply_command(
                _for_worker(self.model_path), input_path, self._result_path("output"), residual, uncertainty,
                tta=self.tta, device=device, python=self.python, worker=self.worker,
            )  # fmt: skip
        assert self.config is not None
        config_path = self.folder / "config.json"
        self.config.save(config_path)
        output = self._result_path("output")
        if self.config.method == "noise2noise":
            inputs = [input_path] + ([self._input_path("second")] if self.second_input_node is not None else [])
            return noise2noise_command(inputs, output, config_path, residual, uncertainty, python=self.python, worker=self.worker)
        if self.config.method == "supervised":
            return supervised_command(
                self._input_path("training_noisy"), self._input_path("training_clean"), input_path, output, config_path,
                residual, uncertainty, python=self.python, worker=self.worker,
            )  # fmt: skip
        return denoise_command(
            input_path, output, config_path, residual, uncertainty, python=self.python, worker=self.worker,
            save_model_path=None if self.save_model_path is None else _for_worker(self.save_model_path),
        )  # fmt: skip

    def _result_names(self) -> list[str]:
        """The worker's result files by name: ``output``, then ``residual`` and ``uncertainty`` if asked for."""
        optional = (("residual", self.compute_residual), ("uncertainty", self.compute_uncertainty))
        return ["output"] + [name for name, wanted in optional if wanted]


def _for_worker(model: PathLike) -> str:
    """A model argument for the worker, which runs in its temporary folder: a relative path is made
    absolute (else the model would land in the folder that is removed); a model name stays a name."""
    return str(model) if is_model_name(model) else str(Path(model).expanduser().resolve())
