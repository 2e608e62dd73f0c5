"""The module's Logic outside Qt (:class:`ModuleLogic`): turning what a script or the panel hands over
into a configuration, starting a job on nodes and following it, one at a time (:class:`JobRunner`,
blocking, or from a timer the module provides), and installing what the worker still needs.

The module injects the Qt parts (a ``QTimer``, Slicer's Python, its dialogs and slice views), so tests
drive all of it with stand-ins:

>>> logic = ModuleLogic(timer, library_parent, requirements_path)   # timer: start() and stop()
>>> logic.process(getNode("MRHead"), None, {"method": "N2V2"}, waitForCompletion=False)
>>> logic.poll()                                                      # what the timer's timeout calls
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Callable, Optional

from DeepDenoiseLib.denoise.config import DenoiseConfig
from DeepDenoiseLib.denoise.method_rules import default_method
from DeepDenoiseLib.denoise.model_folder import ModelInfo, default_model_folder, list_models
from DeepDenoiseLib.slicer.job_runner import CompletedCallback, JobRunner, ProgressCallback, Timer
from DeepDenoiseLib.slicer.panel import summary_text
from DeepDenoiseLib.slicer.sequences import make_job
from DeepDenoiseLib.slicer.settings import PANEL_METHOD, PanelSettings, SuperResSettings
from DeepDenoiseLib.slicer.superres_job import NodeSuperResJob
from DeepDenoiseLib.slicer.support import missing_worker_packages
from DeepDenoiseLib.slicer.worker_job import JobResult, WorkerJob
from DeepDenoiseLib.superres.config import SuperResConfig

logger = logging.getLogger("DeepDenoise")


def denoise_config(parameters: Any, series: bool = False, frames: Optional[int] = None) -> DenoiseConfig:
    """The DenoiseConfig for a DenoiseConfig, a PanelSettings, a dict of its names (``{"method":
    "N2V2", "budgetMinutes": 2}``; missing ones take their defaults), a parameter node, or None
    (defaults). For a ``series`` (a sequence) of at least 10 ``frames``, None or a dict without a
    method takes the series default, MP-PCA. Raises ValueError for settings that do not go together (a 2D-only method in 3D)."""
    if isinstance(parameters, DenoiseConfig):
        return parameters
    if series and (parameters is None or (isinstance(parameters, Mapping) and "method" not in parameters)):
        parameters = {**(parameters or {}), "method": PANEL_METHOD[default_method(True, frames)]}
    return _settings(PanelSettings, parameters).to_config()


def superres_config(parameters: Any) -> SuperResConfig:
    """The SuperResConfig for a SuperResConfig, a SuperResSettings, a dict of its names
    (``{"mode": "Self-supervised", "factor": 4}``; missing ones take their defaults), a parameter
    node, or None (defaults)."""
    if isinstance(parameters, SuperResConfig):
        return parameters
    return _settings(SuperResSettings, parameters).to_config()


def _settings(settings_class: Any, parameters: Any) -> Any:
    if parameters is None:
        return settings_class()
    if isinstance(parameters, settings_class):
        return parameters
    if isinstance(parameters, Mapping):
        return settings_class.from_parameters(parameters)
    return settings_class.from_parameter_node(parameters)


def ensure_worker_packages(
    requirements_path: str,
    install_torch: Callable[[], bool],
    pip_ensure: Optional[Callable[[], bool]],
    confirm: Callable[[list[str]], bool],
    pip_install: Callable[[str], None],
) -> bool:
    """Makes sure the worker's packages are there, asking before installing anything; False if any is
    still missing. PyTorch comes through ``install_torch`` (the PyTorch extension: False when the user
    declined); the others through ``pip_ensure`` where Slicer has it (5.12 and newer: False when the
    user declined), else through ``pip_install`` once ``confirm(missing)`` agreed. Nothing is
    imported to check."""
    if "torch" in missing_worker_packages(requirements_path) and not install_torch():
        return False
    missing = [name for name in missing_worker_packages(requirements_path) if name != "torch"]
    if pip_ensure is not None:
        if not pip_ensure():
            return False
    elif missing:
        if not confirm(missing):
            return False
        pip_install(" ".join(missing))
    return not missing_worker_packages(requirements_path)


class ModuleLogic:
    """The module's Logic, usable without the panel: denoising (:meth:`process`) and super-resolution
    (:meth:`superResolve`) of volume nodes in a worker process, one run at a time, followed blocking or
    from ``timer``. Its method names are Slicer's (camelCase): DeepDenoise.py's ``DeepDenoiseLogic``
    is this class with a Qt timer, Slicer's Python for the worker, its temporary folder, the slice
    views and its dialogs (the methods it overrides). ``worker`` replaces the worker's command prefix
    (tests put a scripted stand-in there)."""

    worker: Optional[list[str]] = None

    def __init__(self, timer: Timer, library_parent: str, requirements_path: str, torch_requirement: str = ">=2.0") -> None:
        self._runner = JobRunner(timer)
        self.library_parent = library_parent
        self.requirements_path = requirements_path
        self.torch_requirement = torch_requirement

    # --- What the module provides ---

    def workerPython(self) -> str:
        """The Python interpreter that runs the worker (Slicer's PythonSlicer)."""
        raise NotImplementedError

    def temporaryFolder(self) -> Optional[str]:
        """Where the runs' temporary folders go (None: the system's)."""
        return None

    def showResult(self, inputVolume: Any, outputVolume: Any) -> None:
        """Shows a result that reached the scene (the module: over the input in the slice views)."""

    def confirmInstall(self, missing: list[str]) -> bool:
        """Whether the user agrees to install the ``missing`` packages."""
        return False

    # --- The runs ---

    @property
    def isRunning(self) -> bool:
        return self._runner.is_running

    @property
    def lastResult(self) -> Optional[JobResult]:
        """What the last run that succeeded put in the scene (output, residual and uncertainty nodes,
        a sequence's browser, the worker's summary)."""
        return self._runner.last_result

    configFromParameters = staticmethod(denoise_config)
    superResConfig = staticmethod(superres_config)

    def poll(self) -> None:
        """The timer's work: hands on the run's progress, and its result once it ended."""
        self._runner.poll()

    def process(
        self,
        inputVolume: Any,
        outputVolume: Any = None,
        parameters: Any = None,
        waitForCompletion: bool = True,
        residualVolume: Any = None,
        computeResidual: bool = False,
        uncertaintyVolume: Any = None,
        computeUncertainty: bool = False,
        progressCallback: Optional[ProgressCallback] = None,
        completedCallback: Optional[CompletedCallback] = None,
        showResult: bool = True,
        modelPath: Any = None,
        saveModelPath: Any = None,
        secondVolume: Any = None,
        trainingNoisyVolume: Any = None,
        trainingCleanVolume: Any = None,
    ) -> Any:
        """Denoise ``inputVolume`` in a separate process. Works without the panel.

        :param inputVolume: the noisy scalar volume, or a sequence of them (4D: MP-PCA unless the
            parameters name a method, or one model for all frames; the results are new sequences with
            their own browser, ``lastResult.browser_node``).
        :param outputVolume: the volume to fill; None creates one next to the input.
        :param parameters: a parameter node, a dict of its setting names (e.g. ``{"method": "N2V2",
            "budgetMinutes": 2}``), a PanelSettings or a full DenoiseConfig; None takes the defaults.
        :param waitForCompletion: True blocks until the result is in the scene and returns the output
            node (raising WorkerError or Cancelled on failure); False returns None at once, and the
            result or error goes to ``completedCallback(result, error)`` from the timer.
        :param residualVolume, computeResidual: also output input minus denoised.
        :param uncertaintyVolume, computeUncertainty: also output the per-voxel spread across the
            test-time augmentations; the parameters must turn test-time augmentation on.
        :param progressCallback: called with each ProgressEvent (stage, fraction, loss, ETA).
        :param showResult: show the result over the input in the slice views, half transparent.
        :param modelPath: apply this saved model (a .safetensors path, or a name from ``savedModels``)
            instead of training one; only the parameters' test-time augmentation and device then matter.
        :param saveModelPath: also save the model the run trains (a .safetensors path, or a name kept
            in the per-user folder ``modelFolder``).
        :param secondVolume: method Noise2Noise: a second acquisition of the same anatomy on the
            input's grid (none for a sequence, whose neighbouring frames are the pairs).
        :param trainingNoisyVolume, trainingCleanVolume: method Supervised: the (noisy, clean) pair,
            on one grid, that the network trains on before it denoises the input.

        The scene changes only when the worker succeeded: on failure or cancel nothing was added or
        filled. Temporary files go to a folder that is always removed.
        """
        if self.isRunning:
            raise RuntimeError("A denoising run is in progress; cancel it first.")
        sequence = inputVolume is not None and inputVolume.IsA("vtkMRMLSequenceNode")
        frames = inputVolume.GetNumberOfDataNodes() if sequence else None
        config = self.configFromParameters(parameters, series=bool(sequence), frames=frames)
        job = make_job(
            inputVolume,
            config,
            output_node=outputVolume,
            residual_node=residualVolume,
            compute_residual=computeResidual,
            uncertainty_node=uncertaintyVolume,
            compute_uncertainty=computeUncertainty,
            **self._worker_options(),
            model_path=modelPath,
            save_model_path=saveModelPath,
            second_input_node=secondVolume,
            training_noisy_node=trainingNoisyVolume,
            training_clean_node=trainingCleanVolume,
        )
        job.start()
        what = f"model {modelPath}" if modelPath else f"{config.method} {config.model.dimensions}"
        logger.info(f"DeepDenoise: {what} on '{inputVolume.GetName()}' started")
        return self._follow(job, waitForCompletion, progressCallback, completedCallback, showResult)

    def superResolve(
        self,
        inputVolume: Any,
        parameters: Any = None,
        trainingVolumes: Sequence[Any] = (),
        outputVolume: Any = None,
        uncertaintyVolume: Any = None,
        computeUncertainty: bool = False,
        waitForCompletion: bool = True,
        progressCallback: Optional[ProgressCallback] = None,
        completedCallback: Optional[CompletedCallback] = None,
        showResult: bool = True,
    ) -> Any:
        """Make ``inputVolume`` finer along one axis in a separate process. Works without the panel::

            fine = logic.superResolve(getNode("thick"), {"mode": "Self-supervised", "factor": 4})

        :param parameters: a SuperResSettings, a dict of its names in camelCase (``mode``, ``method``,
            ``factor``, ``axis``, ``cascade``, ``budgetMinutes``, ``samplingSteps``, ``samples``,
            ``device``, ``seed``), a full SuperResConfig, or None for the defaults (supervised mode:
            give ``trainingVolumes``).
        :param trainingVolumes: high-resolution volumes for the supervised mode.
        :param outputVolume: the volume to fill; None creates one next to the input. Either way it
            ends up on the finer grid (same orientation and field of view).
        :param uncertaintyVolume, computeUncertainty: also output the spread of the DDPM's samples.

        Blocking, callbacks, and the scene left as it was on failure or cancel: as for ``process``.
        """
        if self.isRunning:
            raise RuntimeError("A run is in progress; cancel it first.")
        config = self.superResConfig(parameters)
        job = NodeSuperResJob(
            inputVolume,
            config,
            training_nodes=list(trainingVolumes or ()),
            output_node=outputVolume,
            uncertainty_node=uncertaintyVolume,
            compute_uncertainty=computeUncertainty,
            **self._worker_options(),
        )
        job.start()
        logger.info(f"DeepDenoise: super-resolution x{config.factor} ({config.method}, {config.mode}) on '{inputVolume.GetName()}' started")
        return self._follow(job, waitForCompletion, progressCallback, completedCallback, showResult)

    def cancel(self) -> None:
        """Stop the background run: the worker and its children are killed, the scene is untouched."""
        self._runner.cancel()

    def _worker_options(self) -> dict[str, Any]:
        python = self.workerPython() if self.worker is None else None
        return {"python": python, "worker": self.worker, "library_parent": self.library_parent, "temp_parent": self.temporaryFolder()}

    def _follow(
        self,
        job: WorkerJob,
        wait: bool,
        progress: Optional[ProgressCallback],
        completed: Optional[CompletedCallback],
        show: bool,
    ) -> Any:
        on_result = (lambda job, result: self.showResult(job.input_node, result.output_node)) if show else None
        return self._runner.follow(job, wait, progress, completed, on_result)

    # --- Models and packages ---

    @staticmethod
    def savedModels(folder: Any = None) -> list[ModelInfo]:
        """The saved models (ModelInfo: name, path, method, what it was trained on, or the reason a
        file cannot be used) in ``folder``, by default the per-user model folder (``modelFolder``)."""
        return list_models(folder)

    @staticmethod
    def modelFolder() -> Path:
        """The per-user folder where saved models are kept (it may not exist yet)."""
        return default_model_folder()

    summaryText = staticmethod(summary_text)

    def ensureDependencies(self) -> bool:
        """Make sure PyTorch (through the PyTorch extension) and the other packages the worker needs are
        installed, asking the user before installing anything (:meth:`confirmInstall`). False if any
        is still missing (the user declined, or Slicer's testing mode skipped the install). Only the
        worker imports torch: here its presence is checked without importing it."""
        import slicer

        return ensure_worker_packages(
            self.requirements_path, self._install_torch, self._pip_ensure(), self.confirmInstall, slicer.util.pip_install
        )

    def _install_torch(self) -> bool:
        try:
            import PyTorchUtils
        except ModuleNotFoundError as error:
            raise RuntimeError(
                "DeepDenoise needs the PyTorch extension: install 'PyTorch' from the Extensions Manager and restart Slicer."
            ) from error
        logic = PyTorchUtils.PyTorchUtilsLogic()
        return logic.installTorch(askConfirmation=True, torchVersionRequirement=self.torch_requirement) is not None

    def _pip_ensure(self) -> Optional[Callable[[], bool]]:
        """Slicer's own installer of requirements (5.12 and newer), or None."""
        try:
            import slicer.packaging
        except ImportError:
            return None
        if not hasattr(slicer.packaging, "pip_ensure"):
            return None

        def pip_ensure() -> bool:
            try:
                slicer.packaging.pip_ensure(slicer.packaging.load_requirements(self.requirements_path), requester="DeepDenoise")
            except RuntimeError as error:  # the user declined
                logger.info(f"DeepDenoise: {error}")
                return False
            return True

        return pip_ensure
