import logging
import os
import shutil
import sys
import unittest
from typing import Annotated

import qt
import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin


def _libraryParent():
    """The folder holding DeepDenoiseLib: this module's own folder in an installed extension, the
    repository root when the module is loaded from a checkout (developer mode)."""
    moduleFolder = os.path.dirname(os.path.abspath(__file__))
    for candidate in (moduleFolder, os.path.dirname(moduleFolder)):
        if os.path.isfile(os.path.join(candidate, "DeepDenoiseLib", "__init__.py")):
            return candidate
    raise ImportError(f"DeepDenoiseLib was found neither in {moduleFolder} nor in its parent folder")


LIBRARY_PARENT = _libraryParent()
if LIBRARY_PARENT not in sys.path:
    sys.path.insert(0, LIBRARY_PARENT)

# What Slicer imports at start-up stays light: no torch, SimpleITK or package of requirements.txt (see
# Testing/test_slicer_module_startup.py); runs import them, or run them in the worker.
from DeepDenoiseLib.slicer import support as slicer_support  # noqa: E402

# On a Slicer older than the minimum the module still loads, and its panel says which Slicer it needs.
SLICER_VERSION_PROBLEM = slicer_support.slicer_version_problem(slicer.app.majorVersion, slicer.app.minorVersion)
_, Choice, WithinRange, parameterNodeWrapper = slicer_support.slicer_module_api(SLICER_VERSION_PROBLEM)

from DeepDenoiseLib.core.progress import Cancelled  # noqa: E402
from DeepDenoiseLib.core.validation import InputError  # noqa: E402
from DeepDenoiseLib.denoise.config import DenoiseConfig  # noqa: E402
from DeepDenoiseLib.denoise.model_folder import default_model_folder, list_models  # noqa: E402
from DeepDenoiseLib.slicer.nodes import (  # noqa: E402
    ARCHITECTURE_NAMES,
    DEVICE_NAMES,
    DIMENSION_NAMES,
    METHOD_NAMES,
    METHODS_2D_ONLY,
    MODALITY_NOISE_MODELS,
    PanelSettings,
)
from DeepDenoiseLib.slicer.panel import (  # noqa: E402
    MODEL_SOURCES,
    TRAIN_ON_INPUT,
    apply_tooltip,
    chosen_model,
    enabled_settings,
    model_choices,
    parameters_after_run,
    parameters_for_method,
    plan_run,
    sequence_option_text,
    sequence_to_run,
    suggested_model_name,
    summary_text,
    updated_model_name,
    visible_settings,
)
from DeepDenoiseLib.slicer.sequences import make_job, sequence_of_proxy, shown_node  # noqa: E402
from DeepDenoiseLib.slicer.superres_job import (  # noqa: E402
    AXIS_NAMES,
    MODE_NAMES,
    SUPERRES_METHOD_NAMES,
    NodeSuperResJob,
    SuperResSettings,
)
from DeepDenoiseLib.slicer.superres_panel import (  # noqa: E402
    plan_superres_run,
    superres_enabled_settings,
    superres_parameters_after_run,
    superres_summary_text,
    superres_tooltip,
    superres_visible_settings,
)
from DeepDenoiseLib.superres.config import SuperResConfig  # noqa: E402

HOMEPAGE = "https://github.com/deepdenoise/SlicerDeepDenoise"
TORCH_REQUIREMENT = ">=2.0"
REQUIREMENTS_PATH = os.path.join(os.path.dirname(__file__), "Resources", "requirements.txt")

_DEFAULTS = PanelSettings()
_SUPERRES_DEFAULTS = SuperResSettings()


#
# DeepDenoise
#


class DeepDenoise(ScriptedLoadableModule):
    """Self-supervised deep-learning denoising (blind-spot Noise2Void and its kin) of the volume in view."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("DeepDenoise")
        self.parent.categories = ["Filtering.Denoising"]
        self.parent.dependencies = []
        self.parent.contributors = ["The DeepDenoise contributors"]
        self.parent.helpText = _(
            "Removes noise from a volume with a network trained on that same volume: no clean images and "
            "no downloaded model are needed. Pick a volume, a method and a time budget and press Apply; "
            "the result appears over the input in the slice views."
            "<ul>"
            "<li><b>Blind-spot N2V</b> (default): a network that never sees the voxel it predicts learns "
            "from every voxel, then fuses its prediction with the voxel's noisy value under the noise "
            "model. 2D only, with neighbouring slices as context.</li>"
            "<li><b>N2V</b> (Noise2Void): hides a few voxels in each patch and learns to predict them from "
            "their surroundings; 2D or 3D.</li>"
            "<li><b>N2V2</b>: N2V with blur-pooling and median replacement, which avoid checkerboard "
            "artefacts.</li>"
            "<li><b>structN2V</b>: hides a short line of voxels instead of one, for noise correlated along "
            "an axis (streaks).</li>"
            "<li><b>Noise2Noise</b>: learns to predict one acquisition from another of the same anatomy "
            "(a <i>second acquisition</i> on the same grid; for a sequence, neighbouring frames).</li>"
            "<li><b>Supervised</b>: learns from a <i>training noisy volume</i> and its clean partner (e.g. "
            "low-dose and full-dose CT), then denoises the input; UNet or denoising autoencoder (DAE), "
            "with an optional adversarial term (Advanced).</li>"
            "</ul>"
            "The modality preset sets the noise model: Rician for MRI, Gaussian for CT and generic "
            "images, Poisson for PET (denoised after a variance-stabilising transform) and speckle for "
            "ultrasound (denoised in the log domain); the noise parameters are estimated from the volume. "
            "The optional uncertainty volume is the per-voxel spread of the test-time augmented "
            "predictions; asking for it turns test-time augmentation on. "
            "<p><b>Model</b>: tick <i>Save the trained model as</i> to keep the network in your model "
            "folder, and choose <i>Apply a saved model</i> to denoise other volumes with it at once, "
            "without training. When the input is the frame in view of a sequence (4D), one model can "
            "denoise every frame; the results are new sequences.</p>"
            "<p><b>Super-resolution</b>: makes a thick-slice or low-resolution volume finer along one axis "
            "(by default its thickest) with a conditional diffusion model (DDPM) or, as a baseline, a "
            "regression network. <i>Self-supervised</i> learns from the volume's own finer in-plane detail; "
            "<i>Supervised</i> from a high-resolution training volume. The result is a new volume on the "
            "finer grid with the same field of view; with DDPM, the optional uncertainty volume is the "
            "spread of its samples.</p>"
            'See the <a href="{homepage}#readme">DeepDenoise documentation</a>.'
        ).format(homepage=HOMEPAGE)
        self.parent.acknowledgementText = _(
            "DeepDenoise builds on Noise2Void (Krull et al., CVPR 2019), blind-spot networks (Laine et al., "
            "NeurIPS 2019), N2V2 (Hoeck et al., ECCV BIC 2022) "
            "and structured Noise2Void (Broaddus et al., ISBI 2020), and on the 3D Slicer and PyTorch "
            "extension communities. The sample volume derives from the MNI ICBM152 2009a template, "
            "Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal "
            "Neurological Institute, McGill University."
        )
        if SLICER_VERSION_PROBLEM:
            self.parent.helpText = SLICER_VERSION_PROBLEM
        else:
            slicer.app.connect("startupCompleted()", registerSampleData)


#
# Sample data
#


def registerSampleData():
    """Offer the bundled noisy brain slab (MNI152 T1 with Rician noise) in the Sample Data module."""
    import SampleData

    thumbnail = os.path.join(os.path.dirname(__file__), "Resources", "Icons", "DeepDenoiseNoisyBrain.png")
    slicer_support.register_sample(SampleData.SampleDataLogic, thumbnail, category_title=_("DeepDenoise"))


#
# DeepDenoiseParameterNode
#


@parameterNodeWrapper
class DeepDenoiseParameterNode:
    """The panel's state, saved with the scene. Names match PanelSettings (in camelCase) plus the nodes.

    inputVolume - the noisy volume.
    secondVolume - Noise2Noise: a second acquisition of the same anatomy on the input's grid.
    trainingNoisyVolume, trainingCleanVolume - Supervised: the (noisy, clean) pair to train on.
    denoiseSequence - when the input is the frame in view of a sequence, denoise the whole sequence.
    modelSource - train on the input, or apply the saved model savedModel (a name in the model folder;
    the panel fills its list from the folder, so no widget binds it).
    saveModel, saveModelName - also keep the trained model under that name (or path).
    outputVolume - where the denoised volume goes; none creates a new volume next to the input.
    computeResidual, residualVolume - also output input minus denoised (what was removed).
    computeUncertainty, uncertaintyVolume - also output the spread across test-time augmentations
    (needs testTimeAugmentation, which the panel turns on with it).
    superres* - the Super-resolution section: its input, settings (SuperResSettings in camelCase with
    the prefix; the device and seed are the module's), the high-resolution training volume of the
    supervised mode, and its outputs.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    secondVolume: vtkMRMLScalarVolumeNode
    trainingNoisyVolume: vtkMRMLScalarVolumeNode
    trainingCleanVolume: vtkMRMLScalarVolumeNode
    denoiseSequence: bool = True
    method: Annotated[str, Choice(list(METHOD_NAMES))] = _DEFAULTS.method
    dimensions: Annotated[str, Choice(list(DIMENSION_NAMES))] = _DEFAULTS.dimensions
    modality: Annotated[str, Choice(list(MODALITY_NOISE_MODELS))] = _DEFAULTS.modality
    architecture: Annotated[str, Choice(list(ARCHITECTURE_NAMES))] = _DEFAULTS.architecture
    modelSource: Annotated[str, Choice(list(MODEL_SOURCES))] = TRAIN_ON_INPUT
    savedModel: str = ""
    saveModel: bool = False
    saveModelName: str = ""
    budgetMinutes: Annotated[float, WithinRange(0.05, 1440.0)] = _DEFAULTS.budget_minutes
    device: Annotated[str, Choice(list(DEVICE_NAMES))] = _DEFAULTS.device
    outputVolume: vtkMRMLScalarVolumeNode
    computeResidual: bool = False
    residualVolume: vtkMRMLScalarVolumeNode
    computeUncertainty: bool = False
    uncertaintyVolume: vtkMRMLScalarVolumeNode
    patchSize: Annotated[int, WithinRange(8, 512)] = _DEFAULTS.patch_size
    batchSize: Annotated[int, WithinRange(1, 1024)] = _DEFAULTS.batch_size
    learningRate: Annotated[float, WithinRange(1e-6, 1.0)] = _DEFAULTS.learning_rate
    maskedFraction: Annotated[float, WithinRange(1e-4, 0.25)] = _DEFAULTS.masked_fraction
    testTimeAugmentation: bool = _DEFAULTS.test_time_augmentation
    seed: Annotated[int, WithinRange(0, 2**31 - 1)] = _DEFAULTS.seed
    adversarialWeight: Annotated[float, WithinRange(0.0, 10.0)] = _DEFAULTS.adversarial_weight
    superresInputVolume: vtkMRMLScalarVolumeNode
    superresMode: Annotated[str, Choice(list(MODE_NAMES))] = _SUPERRES_DEFAULTS.mode
    superresMethod: Annotated[str, Choice(list(SUPERRES_METHOD_NAMES))] = _SUPERRES_DEFAULTS.method
    superresFactor: Annotated[int, WithinRange(2, 16)] = _SUPERRES_DEFAULTS.factor
    superresAxis: Annotated[str, Choice(list(AXIS_NAMES))] = _SUPERRES_DEFAULTS.axis
    superresCascade: bool = _SUPERRES_DEFAULTS.cascade
    superresBudgetMinutes: Annotated[float, WithinRange(0.05, 1440.0)] = _SUPERRES_DEFAULTS.budget_minutes
    superresSamplingSteps: Annotated[int, WithinRange(1, 1000)] = _SUPERRES_DEFAULTS.sampling_steps
    superresSamples: Annotated[int, WithinRange(1, 64)] = _SUPERRES_DEFAULTS.samples
    superresTrainingVolume: vtkMRMLScalarVolumeNode
    superresOutputVolume: vtkMRMLScalarVolumeNode
    superresComputeUncertainty: bool = False
    superresUncertaintyVolume: vtkMRMLScalarVolumeNode


#
# DeepDenoiseWidget
#

#: Settings that panel_jobs.enabled_settings names but no SlicerParameterName binds, and their widgets.
UNBOUND_SETTING_WIDGETS = {"savedModel": "savedModelComboBox"}
#: A QComboBox item whose flags (kept in this role) are zero is shown greyed and cannot be chosen.
ITEM_FLAGS_ROLE = qt.Qt.UserRole - 1


class DeepDenoiseWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: binds the .ui to the parameter node and turns Apply into Cancel while a run goes on.
    What is enabled, which model name to suggest and what Apply runs are decided in panel_jobs.py."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._settingWidgets = {}
        self._settingLabels = {}
        self._modelChoices = []
        self._suggestedModelName = ""
        self._run = None
        self._superresRun = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        if SLICER_VERSION_PROBLEM:
            label = qt.QLabel(SLICER_VERSION_PROBLEM)
            label.wordWrap = True
            self.layout.addWidget(label)
            return
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/DeepDenoise.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self._settingWidgets = {
            widget.property("SlicerParameterName"): widget
            for widget in uiWidget.findChildren(qt.QWidget)
            if widget.property("SlicerParameterName")
        }
        for name, widgetName in UNBOUND_SETTING_WIDGETS.items():
            self._settingWidgets[name] = getattr(self.ui, widgetName)
        # A widget's label in the .ui is named after it: "<widget>Label".
        self._settingLabels = {name: getattr(self.ui, f"{widget.objectName}Label", None) for name, widget in self._settingWidgets.items()}

        self.logic = DeepDenoiseLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.superresApplyButton.connect("clicked(bool)", self.onSuperResolveButton)
        # activated and clicked come from the user only, after the parameter node took the new value.
        self.ui.methodComboBox.connect("activated(int)", self.onMethodChosen)
        self.ui.computeUncertaintyCheckBox.connect("clicked(bool)", self.onComputeUncertaintyClicked)
        self.ui.savedModelComboBox.connect("activated(int)", self.onSavedModelChosen)
        self.ui.refreshModelsButton.connect("clicked(bool)", self.onRefreshModels)
        self.ui.openModelFolderButton.connect("clicked(bool)", self.onOpenModelFolder)
        self.ui.openModelFolderButton.toolTip = _("Open the model folder, {folder}, in the file manager.").format(
            folder=self.logic.modelFolder()
        )

        self._showIdle(_("Pick a volume and press Apply."))
        # The model list first: the parameter node's saved-model choice is kept only if it is listed.
        self.onRefreshModels()
        self.initializeParameterNode()

    def cleanup(self) -> None:
        if self.logic is not None and self.logic.isRunning:
            self.logic.cancel()
        self.removeObservers()

    def onReload(self) -> None:
        """Developer mode's Reload also re-reads DeepDenoiseLib, so that library edits need no restart."""
        slicer_support.forget_library_modules()
        ScriptedLoadableModuleWidget.onReload(self)

    def enter(self) -> None:
        if self.logic is not None:
            self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)

    def onSceneStartClose(self, caller, event) -> None:
        if self.logic.isRunning:
            self.logic.cancel()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolumeNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolumeNode and not firstVolumeNode.IsA("vtkMRMLLabelMapVolumeNode"):
                self._parameterNode.inputVolume = firstVolumeNode
        if not self._parameterNode.superresInputVolume and self._parameterNode.inputVolume:
            self._parameterNode.superresInputVolume = self._parameterNode.inputVolume

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # Widgets carry a "SlicerParameterName" property in the .ui that names their parameter.
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)
            self._updateGui()

    def _updateGui(self, caller=None, event=None) -> None:
        running = self.logic.isRunning
        for section in (
            self.ui.inputsCollapsibleButton,
            self.ui.methodCollapsibleButton,
            self.ui.modelCollapsibleButton,
            self.ui.budgetCollapsibleButton,
            self.ui.outputsCollapsibleButton,
            self.ui.advancedCollapsibleButton,
            self.ui.superresSettingsFrame,
        ):
            section.enabled = not running
        parameters = self._parameterNode
        if parameters:
            enabled = {**enabled_settings(parameters), **superres_enabled_settings(parameters)}
            for name, isEnabled in enabled.items():
                self._settingWidgets[name].enabled = isEnabled
            visible = {**visible_settings(parameters), **superres_visible_settings(parameters)}
            for name, isVisible in visible.items():
                for widget in (self._settingWidgets[name], self._settingLabels.get(name)):
                    if widget is not None:
                        widget.visible = isVisible
            frameOf = sequence_of_proxy(parameters.inputVolume)
            self.ui.denoiseSequenceCheckBox.visible = frameOf is not None
            if frameOf is not None:
                self.ui.denoiseSequenceCheckBox.text = sequence_option_text(frameOf)
            self.ui.sequenceOutputsLabel.visible = sequence_to_run(parameters) is not None
            self._suggestModelName()
            self._showSavedModel()
        # While a run goes on, its own button turns into Cancel and the other one waits.
        superresRunning = running and self._superresRun is not None
        for button, isRunning, idleText in (
            (self.ui.applyButton, running and not superresRunning, _("Apply")),
            (self.ui.superresApplyButton, superresRunning, _("Super-resolve")),
        ):
            button.text = _("Cancel") if isRunning else idleText
            if isRunning:
                button.toolTip = _("Stop the run; the scene stays as it was")
        if running:
            self.ui.applyButton.enabled = not superresRunning
            self.ui.superresApplyButton.enabled = superresRunning
        else:
            self.ui.applyButton.toolTip = apply_tooltip(parameters) if parameters else _("Select an input volume")
            self.ui.applyButton.enabled = bool(parameters and parameters.inputVolume)
            self.ui.superresApplyButton.toolTip = superres_tooltip(parameters) if parameters else _("Select an input volume")
            self.ui.superresApplyButton.enabled = bool(parameters and parameters.superresInputVolume)

    def _suggestModelName(self) -> None:
        """Offer "<input> <method>" as the save-as name until the user types one of their own."""
        parameters = self._parameterNode
        source = sequence_to_run(parameters) or parameters.inputVolume
        if source is None:
            return
        suggestion = suggested_model_name(source.GetName(), parameters.method)
        name = updated_model_name(parameters.saveModelName, self._suggestedModelName, suggestion)
        self._suggestedModelName = suggestion
        if name != parameters.saveModelName:
            parameters.saveModelName = name

    def _showSavedModel(self) -> None:
        """Select the parameter node's saved model in the list (the first usable one if it is gone)."""
        name = chosen_model(self._modelChoices, self._parameterNode.savedModel)
        if name != self._parameterNode.savedModel:
            self._parameterNode.savedModel = name
        index = self.ui.savedModelComboBox.findData(name)
        if index >= 0 and index != self.ui.savedModelComboBox.currentIndex:
            self.ui.savedModelComboBox.currentIndex = index

    def onSavedModelChosen(self, index) -> None:
        if self._parameterNode:
            self._parameterNode.savedModel = self.ui.savedModelComboBox.itemData(index) or ""

    def onRefreshModels(self) -> None:
        """List the model folder again: usable models by name, method and training volume; the others
        greyed out, with the reason in their tooltip."""
        self._modelChoices = model_choices(self.logic.savedModels(), self.logic.modelFolder())
        comboBox = self.ui.savedModelComboBox
        wasBlocked = comboBox.blockSignals(True)
        comboBox.clear()
        for index, choice in enumerate(self._modelChoices):
            comboBox.addItem(choice.label, choice.name)
            comboBox.setItemData(index, choice.tooltip, qt.Qt.ToolTipRole)
            if not choice.usable:
                comboBox.setItemData(index, 0, ITEM_FLAGS_ROLE)
        comboBox.blockSignals(wasBlocked)
        if self._parameterNode:
            self._showSavedModel()

    def onOpenModelFolder(self) -> None:
        folder = self.logic.modelFolder()
        folder.mkdir(parents=True, exist_ok=True)
        qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(str(folder)))

    def onMethodChosen(self, index) -> None:
        """A 2D-only method (Blind-spot N2V) switches the dimensions to 2D; a paired method, which
        keeps no model, unticks saving."""
        if self._parameterNode:
            for name, value in parameters_for_method(self._parameterNode.method).items():
                setattr(self._parameterNode, name, value)

    def onComputeUncertaintyClicked(self, checked) -> None:
        """The uncertainty is the spread across test-time augmentations: asking for it turns them on."""
        if checked and self._parameterNode:
            self._parameterNode.testTimeAugmentation = True

    def onApplyButton(self) -> None:
        if self.logic.isRunning:
            self.logic.cancel()
            return
        with slicer.util.tryWithErrorDisplay(_("Could not start denoising."), waitCursor=True):
            if not self.logic.ensureDependencies():
                self._showIdle(
                    _("Denoising needs PyTorch and a few Python packages, and some are not installed: press Apply to install them.")
                )
                return
            run = plan_run(self._parameterNode, self.logic.savedModels(), self.logic.modelFolder())
            if run.replaces_model is not None and not slicer.util.confirmOkCancelDisplay(
                _("A saved model already has this name ({path}). Replace it with the model this run trains?").format(
                    path=run.replaces_model
                )
            ):
                return
            self.logic.process(
                **run.process_arguments(),
                waitForCompletion=False,
                progressCallback=self.onProgress,
                completedCallback=self.onCompleted,
            )
            self._run = run
            self.ui.progressBar.value = 0
            self.ui.progressBar.format = _("starting %p%")
            self.ui.statusLabel.text = _("Running in the background; you can keep working.")
        self._updateGui()

    def onSuperResolveButton(self) -> None:
        if self.logic.isRunning:
            self.logic.cancel()
            return
        with slicer.util.tryWithErrorDisplay(_("Could not start super-resolution."), waitCursor=True):
            if not self.logic.ensureDependencies():
                self._showIdle(
                    _(
                        "Super-resolution needs PyTorch and a few Python packages, and some are not installed: press Super-resolve to install them."
                    )
                )
                return
            run = plan_superres_run(self._parameterNode)
            self.logic.superResolve(
                **run.logic_arguments(),
                waitForCompletion=False,
                progressCallback=self.onProgress,
                completedCallback=self.onSuperResCompleted,
            )
            self._superresRun = run
            self.ui.progressBar.value = 0
            self.ui.progressBar.format = _("starting %p%")
            self.ui.statusLabel.text = _("Running in the background; you can keep working.")
        self._updateGui()

    def onSuperResCompleted(self, result, error) -> None:
        run, self._superresRun = self._superresRun, None
        if error is None:
            if self._parameterNode and run is not None:
                for name, value in superres_parameters_after_run(run, result).items():
                    setattr(self._parameterNode, name, value)
            self.ui.progressBar.value = 100
            self.ui.progressBar.format = _("done")
            self.ui.statusLabel.text = superres_summary_text(result.summary)
        else:
            self._showFailure(error, _("Super-resolution failed: {message}"))
        self._updateGui()

    def onProgress(self, event) -> None:
        self.ui.progressBar.value = int(round(100 * min(max(event.fraction, 0.0), 1.0)))
        text = f"{event.stage} %p%"
        if event.eta_seconds is not None:
            minutes, seconds = divmod(int(round(event.eta_seconds)), 60)
            text += "  " + _("ETA {minutes}:{seconds:02d}").format(minutes=minutes, seconds=seconds)
        self.ui.progressBar.format = text
        details = [event.message] if event.message else []
        if event.loss is not None:
            details.append(_("loss {loss:.4g}").format(loss=event.loss))
        if details:
            self.ui.statusLabel.text = ", ".join(details)

    def onCompleted(self, result, error) -> None:
        run, self._run = self._run, None
        if error is None:
            if run is not None and run.save_model_path is not None:
                self.onRefreshModels()
            if self._parameterNode and run is not None:
                for name, value in parameters_after_run(run, result).items():
                    setattr(self._parameterNode, name, value)
            self.ui.progressBar.value = 100
            self.ui.progressBar.format = _("done")
            self.ui.statusLabel.text = self.logic.summaryText(result.summary)
        else:
            self._showFailure(error, _("Denoising failed: {message}"))
        self._updateGui()

    def _showFailure(self, error, dialogText) -> None:
        """A cancelled run only says so; a failed one also opens an error dialog with the details."""
        if isinstance(error, Cancelled):
            self._showIdle(_("Cancelled; the scene was left as it was."))
            return
        self._showIdle(_("Failed: {message}").format(message=error))
        details = getattr(error, "details", "")
        slicer.util.errorDisplay(dialogText.format(message=error), **({"detailedText": details} if details else {}))

    def _showIdle(self, message) -> None:
        self.ui.progressBar.value = 0
        self.ui.progressBar.format = _("idle")
        self.ui.statusLabel.text = message


#
# DeepDenoiseLogic
#


class DeepDenoiseLogic(ScriptedLoadableModuleLogic):
    """Runs DeepDenoiseLib on volume nodes in a background process; usable without the panel.

    From the Python console::

        import DeepDenoise
        logic = DeepDenoise.DeepDenoiseLogic()
        denoised = logic.process(getNode("MRHead"), None, {"method": "N2V2", "budgetMinutes": 2})
        denoised = logic.process(getNode("MRHead"), None, {"testTimeAugmentation": True}, computeUncertainty=True)
        uncertainty = logic.lastResult.uncertainty_node
    """

    POLL_INTERVAL_MS = 200

    def __init__(self) -> None:
        if SLICER_VERSION_PROBLEM:
            raise RuntimeError(SLICER_VERSION_PROBLEM)
        ScriptedLoadableModuleLogic.__init__(self)
        self.lastResult = None
        self._job = None
        self._showResult = True
        self._progressCallback = None
        self._completedCallback = None
        self._timer = qt.QTimer()
        self._timer.setInterval(self.POLL_INTERVAL_MS)
        self._timer.connect("timeout()", self._onTimer)

    def getParameterNode(self):
        return DeepDenoiseParameterNode(super().getParameterNode())

    @property
    def isRunning(self) -> bool:
        return self._job is not None

    @staticmethod
    def configFromParameters(parameters):
        """The DenoiseConfig for a DenoiseConfig, a PanelSettings, a dict of parameter-node names
        (missing ones take their defaults), a parameter node, or None (defaults). Raises ValueError
        for settings that do not go together (a 2D-only method in 3D)."""
        if isinstance(parameters, DenoiseConfig):
            return parameters
        if parameters is None:
            settings = PanelSettings()
        elif isinstance(parameters, PanelSettings):
            settings = parameters
        elif isinstance(parameters, dict):
            settings = PanelSettings.from_parameters(parameters)
        else:
            settings = PanelSettings.from_parameters({name: getattr(parameters, name) for name in PanelSettings.parameter_names()})
        return settings.to_config()

    @staticmethod
    def workerPython() -> str:
        """PythonSlicer: Slicer's Python interpreter as a separate process (it sees the same packages)."""
        pythonSlicer = shutil.which("PythonSlicer")
        if not pythonSlicer:
            raise RuntimeError(_("PythonSlicer was not found; the background worker cannot start."))
        return pythonSlicer

    def process(
        self,
        inputVolume,
        outputVolume=None,
        parameters=None,
        waitForCompletion=True,
        residualVolume=None,
        computeResidual=False,
        uncertaintyVolume=None,
        computeUncertainty=False,
        progressCallback=None,
        completedCallback=None,
        showResult=True,
        modelPath=None,
        saveModelPath=None,
        secondVolume=None,
        trainingNoisyVolume=None,
        trainingCleanVolume=None,
    ):
        """Denoise ``inputVolume`` in a separate process. Works without the panel.

        :param inputVolume: the noisy scalar volume, or a sequence of them (4D: one model for all
            frames; the results are new sequences with their own browser, ``lastResult.browser_node``).
        :param outputVolume: the volume to fill; None creates one next to the input.
        :param parameters: a parameter node, a dict of its setting names (e.g. ``{"method": "N2V2",
            "budgetMinutes": 2}``), a PanelSettings or a full DenoiseConfig; None takes the defaults.
        :param waitForCompletion: True blocks until the result is in the scene and returns the output
            node (raising WorkerError or Cancelled on failure); False returns None at once, and the
            result or error goes to ``completedCallback(result, error)`` from a Qt timer.
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
            raise RuntimeError(_("A denoising run is in progress; cancel it first."))
        config = self.configFromParameters(parameters)
        job = make_job(
            inputVolume,
            config,
            output_node=outputVolume,
            residual_node=residualVolume,
            compute_residual=computeResidual,
            uncertainty_node=uncertaintyVolume,
            compute_uncertainty=computeUncertainty,
            python=self.workerPython(),
            library_parent=LIBRARY_PARENT,
            temp_parent=slicer.app.temporaryPath,
            model_path=modelPath,
            save_model_path=saveModelPath,
            second_input_node=secondVolume,
            training_noisy_node=trainingNoisyVolume,
            training_clean_node=trainingCleanVolume,
        )
        job.start()
        what = f"model {modelPath}" if modelPath else f"{config.method} {config.model.dimensions}"
        logging.info(f"DeepDenoise: {what} on '{inputVolume.GetName()}' started")
        return self._follow(job, waitForCompletion, progressCallback, completedCallback, showResult)

    @staticmethod
    def superResConfig(parameters):
        """The SuperResConfig for a SuperResConfig, a SuperResSettings, a dict of its names in camelCase
        (``{"mode": "Self-supervised", "factor": 4}``; missing ones take their defaults) or None."""
        if isinstance(parameters, SuperResConfig):
            return parameters
        if parameters is None:
            settings = SuperResSettings()
        elif isinstance(parameters, SuperResSettings):
            settings = parameters
        else:
            settings = SuperResSettings.from_parameters(parameters)
        return settings.to_config()

    def superResolve(
        self,
        inputVolume,
        parameters=None,
        trainingVolumes=(),
        outputVolume=None,
        uncertaintyVolume=None,
        computeUncertainty=False,
        waitForCompletion=True,
        progressCallback=None,
        completedCallback=None,
        showResult=True,
    ):
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
            raise RuntimeError(_("A run is in progress; cancel it first."))
        config = self.superResConfig(parameters)
        job = NodeSuperResJob(
            inputVolume,
            config,
            training_nodes=list(trainingVolumes or ()),
            output_node=outputVolume,
            uncertainty_node=uncertaintyVolume,
            compute_uncertainty=computeUncertainty,
            python=self.workerPython(),
            library_parent=LIBRARY_PARENT,
            temp_parent=slicer.app.temporaryPath,
        )
        job.start()
        logging.info(
            f"DeepDenoise: super-resolution x{config.factor} ({config.method}, {config.mode}) on '{inputVolume.GetName()}' started"
        )
        return self._follow(job, waitForCompletion, progressCallback, completedCallback, showResult)

    def _follow(self, job, waitForCompletion, progressCallback, completedCallback, showResult):
        """Wait for a started job and return its output node, or follow it from the timer and return None."""
        if waitForCompletion:
            try:
                job.wait(on_event=progressCallback)
            except BaseException:
                job.cancel()
                raise
            self.lastResult = job.finish()
            if showResult:
                self.showResult(job.input_node, self.lastResult.output_node)
            return self.lastResult.output_node
        self._job = job
        self._showResult = showResult
        self._progressCallback = progressCallback
        self._completedCallback = completedCallback
        self._timer.start()
        return None

    def cancel(self) -> None:
        """Stop the background run: the worker and its children are killed, the scene is untouched."""
        job = self._job
        if job is None:
            return
        self._timer.stop()
        try:
            job.cancel()
        finally:
            self._complete(None, Cancelled(_("the run was cancelled")))

    def _onTimer(self) -> None:
        job = self._job
        for event in job.poll():
            if self._progressCallback:
                self._progressCallback(event)
        if not job.finished:
            return
        self._timer.stop()
        try:
            result = job.finish()
        except Exception as error:  # WorkerError, Cancelled, InputError, OSError: all go to the user
            logging.error(f"DeepDenoise: {error}")
            self._complete(None, error)
            return
        self.lastResult = result
        if self._showResult:
            self.showResult(job.input_node, result.output_node)
        self._complete(result, None)

    def _complete(self, result, error) -> None:
        callback = self._completedCallback
        self._job = None
        self._progressCallback = None
        self._completedCallback = None
        if callback:
            callback(result, error)

    @staticmethod
    def showResult(inputVolume, outputVolume) -> None:
        """Input in the background, result in the foreground at half opacity: the slice views' fade
        slider then compares the two (for sequences, their current frames)."""
        slicer.util.setSliceViewerLayers(background=shown_node(inputVolume), foreground=shown_node(outputVolume), foregroundOpacity=0.5)

    @staticmethod
    def savedModels(folder=None):
        """The saved models (ModelInfo: name, path, method, what it was trained on, or the reason a
        file cannot be used) in ``folder``, by default the per-user model folder (``modelFolder``)."""
        return list_models(folder)

    @staticmethod
    def modelFolder():
        """The per-user folder where saved models are kept (it may not exist yet)."""
        return default_model_folder()

    @staticmethod
    def summaryText(summary) -> str:
        """One line on a finished run: time, frames, noise before and after, the model it saved."""
        return summary_text(summary)

    def ensureDependencies(self) -> bool:
        """Make sure PyTorch (through the PyTorch extension) and the other packages the worker needs are
        installed, asking the user before installing anything. False if any is still missing (the user
        declined, or Slicer's testing mode skipped the install).

        Only the worker process imports torch: here its presence is checked without importing it."""
        if "torch" in slicer_support.missing_worker_packages(REQUIREMENTS_PATH):
            try:
                import PyTorchUtils
            except ModuleNotFoundError as error:
                raise RuntimeError(
                    _("DeepDenoise needs the PyTorch extension: install 'PyTorch' from the Extensions Manager and restart Slicer.")
                ) from error
            torchLogic = PyTorchUtils.PyTorchUtilsLogic()
            if torchLogic.installTorch(askConfirmation=True, torchVersionRequirement=TORCH_REQUIREMENT) is None:
                return False
        try:
            import slicer.packaging

            pipEnsure = slicer.packaging.pip_ensure  # Slicer 5.12 and newer
        except (ImportError, AttributeError):
            pipEnsure = None
        missing = [name for name in slicer_support.missing_worker_packages(REQUIREMENTS_PATH) if name != "torch"]
        if pipEnsure is not None:
            try:
                pipEnsure(slicer.packaging.load_requirements(REQUIREMENTS_PATH), requester="DeepDenoise")
            except RuntimeError as error:  # the user declined
                logging.info(f"DeepDenoise: {error}")
                return False
        elif missing:
            if not slicer.util.confirmOkCancelDisplay(
                _("DeepDenoise needs these Python packages: {packages}. Install them now?").format(packages=", ".join(missing))
            ):
                return False
            slicer.util.pip_install(" ".join(missing))
        return not slicer_support.missing_worker_packages(REQUIREMENTS_PATH)


#
# DeepDenoiseTest
#


class DeepDenoiseTest(ScriptedLoadableModuleTest):
    """Self-test on a small synthetic volume with a budget of seconds (Developer Tools > Reload and Test).
    It installs nothing: without PyTorch the runs in the background worker are skipped, saying why."""

    def setUp(self):
        if SLICER_VERSION_PROBLEM:
            self.skipTest(SLICER_VERSION_PROBLEM)
        slicer.mrmlScene.Clear()

    def runTest(self):
        for test in (self.test_RefusesLabelMap, self.test_RefusesSettingsThatDoNotGoTogether, self.test_DenoisesAndCancels,
                     self.test_SavesAModelAndAppliesIt, self.test_SuperResolvesOntoTheFinerGrid):  # fmt: skip
            try:
                self.setUp()
                test()
            except unittest.SkipTest as skipped:
                logging.warning(f"DeepDenoise self-test: {test.__name__}: {skipped}")

    def _skipUnlessTheWorkerCanRun(self):
        reason = slicer_support.self_test_skip_reason(slicer_support.missing_worker_packages(REQUIREMENTS_PATH))
        if reason:
            self.delayDisplay(reason)
            self.skipTest(reason)

    def _noisyVolume(self, nodeClassName="vtkMRMLScalarVolumeNode"):
        import numpy as np

        rng = np.random.default_rng(0)
        k, j, i = np.mgrid[:24, :24, :24]
        clean = ((k - 12) ** 2 + (j - 12) ** 2 + (i - 12) ** 2 < 64).astype(np.float32)
        noisy = clean + 0.2 * rng.standard_normal(clean.shape).astype(np.float32)
        ijkToRAS = np.array([[0, 0, -1.2, 5.0], [0.9, 0, 0, -3.0], [0, 1.1, 0, 7.0], [0, 0, 0, 1]])
        if nodeClassName == "vtkMRMLLabelMapVolumeNode":
            noisy = clean.astype(np.int16)
        return slicer.util.addVolumeFromArray(noisy, ijkToRAS=ijkToRAS, name="DeepDenoiseTestInput", nodeClassName=nodeClassName)

    @staticmethod
    def _tinyConfig():
        """The default method, tiny and brief, with test-time augmentation for the uncertainty output.
        Patches of 16 suit the blind-spot network's two poolings (sides divisible by 4)."""
        return DenoiseConfig.for_method(
            DenoiseConfig.method,
            model={"base_channels": 8},
            training={"budget_seconds": 2.0, "patch_size": 16, "batch_size": 4, "steps_per_epoch": 5, "max_epochs": 1},
            prediction={"tta": True},
        )

    def test_SuperResolvesOntoTheFinerGrid(self):
        """A tiny self-supervised regression model, x2 along the slices: the result lies on the grid
        twice as fine along K with the input's orientation and field of view."""
        import numpy as np

        self._skipUnlessTheWorkerCanRun()
        inputVolume = self._noisyVolume()
        config = SuperResConfig.from_dict(
            {
                "factor": 2,
                "axis": "z",
                "mode": "self-supervised",
                "method": "regression",
                "model": {"depth": 1, "base_channels": 8},
                "training": {"patch_size": [16, 16], "batch_size": 2, "max_steps": 3, "budget_seconds": None},
                "sampling": {"patch_size": 16, "patch_overlap": 4},
            }
        )
        outputVolume = DeepDenoiseLogic().superResolve(inputVolume, config, showResult=False)
        self.assertEqual(slicer.util.arrayFromVolume(outputVolume).shape, (48, 24, 24))
        expected = self._matrix(inputVolume)
        expected[:3, 3] -= expected[:3, 2] / 4.0
        expected[:3, 2] /= 2.0
        np.testing.assert_allclose(self._matrix(outputVolume), expected, atol=1e-6)

    @staticmethod
    def _matrix(volumeNode):
        matrix = vtk.vtkMatrix4x4()
        volumeNode.GetIJKToRASMatrix(matrix)
        return slicer.util.arrayFromVTKMatrix(matrix)

    def test_RefusesLabelMap(self):
        labelMap = self._noisyVolume("vtkMRMLLabelMapVolumeNode")
        nodesBefore = slicer.mrmlScene.GetNumberOfNodes()
        with self.assertRaises(InputError):
            DeepDenoiseLogic().process(labelMap, None, self._tinyConfig())
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodesBefore)

    def test_RefusesSettingsThatDoNotGoTogether(self):
        inputVolume = self._noisyVolume()
        nodesBefore = slicer.mrmlScene.GetNumberOfNodes()
        logic = DeepDenoiseLogic()
        twoDOnly = METHODS_2D_ONLY[0]
        with self.assertRaisesRegex(ValueError, f"{twoDOnly} is a 2D method"):
            logic.process(inputVolume, None, {"method": twoDOnly, "dimensions": "3D"})
        with self.assertRaisesRegex(ValueError, "test-time augmentation"):
            logic.process(inputVolume, None, {"testTimeAugmentation": False}, computeUncertainty=True)
        self.assertFalse(logic.isRunning)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodesBefore)

    def test_DenoisesAndCancels(self):
        import numpy as np

        self.delayDisplay("Denoising a 24^3 volume with a 2 s budget, with its uncertainty")
        self._skipUnlessTheWorkerCanRun()
        logic = DeepDenoiseLogic()
        inputVolume = self._noisyVolume()
        inputArray = slicer.util.arrayFromVolume(inputVolume).copy()
        stages = []
        outputVolume = logic.process(
            inputVolume, None, self._tinyConfig(), computeUncertainty=True, progressCallback=lambda e: stages.append(e.stage)
        )
        self.assertEqual(stages[-1], "done")
        self.assertIn("training", stages)
        outputArray = slicer.util.arrayFromVolume(outputVolume)
        self.assertEqual(outputArray.shape, inputArray.shape)
        self.assertTrue(np.isfinite(outputArray).all())
        self.assertLess(float(np.std(outputArray)), float(np.std(inputArray)))
        self.assertTrue(np.array_equal(self._matrix(inputVolume), self._matrix(outputVolume)))
        uncertaintyVolume = logic.lastResult.uncertainty_node
        self.assertEqual(uncertaintyVolume.GetName(), "DeepDenoiseTestInput uncertainty")
        uncertaintyArray = slicer.util.arrayFromVolume(uncertaintyVolume)
        self.assertEqual(uncertaintyArray.shape, inputArray.shape)
        self.assertTrue(np.isfinite(uncertaintyArray).all() and uncertaintyArray.min() >= 0.0)
        self.assertTrue(np.array_equal(self._matrix(inputVolume), self._matrix(uncertaintyVolume)))
        self.assertEqual(logic.lastResult.summary["noise_model"], self._tinyConfig().noise.model)

        self.delayDisplay("Cancelling a background run")
        nodesBefore = slicer.mrmlScene.GetNumberOfNodes()
        outcome = []
        logic.process(inputVolume, None, self._tinyConfig(), waitForCompletion=False, completedCallback=lambda r, e: outcome.append(e))
        self.assertTrue(logic.isRunning)
        logic.cancel()
        self.assertFalse(logic.isRunning)
        self.assertIsInstance(outcome[0], Cancelled)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodesBefore)
        self.assertTrue(np.array_equal(slicer.util.arrayFromVolume(inputVolume), inputArray))
        self.delayDisplay("Test passed")

    def test_SavesAModelAndAppliesIt(self):
        import tempfile

        import numpy as np

        self.delayDisplay("Saving the trained model, then applying it without training")
        self._skipUnlessTheWorkerCanRun()
        logic = DeepDenoiseLogic()
        inputVolume = self._noisyVolume()
        with tempfile.TemporaryDirectory() as folder:
            modelPath = os.path.join(folder, "selftest.safetensors")
            trained = logic.process(inputVolume, None, self._tinyConfig(), saveModelPath=modelPath)
            self.assertTrue(os.path.samefile(logic.lastResult.summary["saved_model"], modelPath))
            models = logic.savedModels(folder)
            self.assertEqual([(model.name, model.problem) for model in models], [("selftest", None)])
            stages = []
            applied = logic.process(
                inputVolume, None, {"testTimeAugmentation": True}, modelPath=modelPath,
                progressCallback=lambda e: stages.append(e.stage),
            )  # fmt: skip
        self.assertNotIn("training", stages)
        self.assertEqual(stages[-1], "done")
        self.assertTrue(np.array_equal(self._matrix(inputVolume), self._matrix(applied)))
        # The same network on the same voxels with the same test-time augmentation: the same result.
        np.testing.assert_allclose(slicer.util.arrayFromVolume(applied), slicer.util.arrayFromVolume(trained), rtol=1e-4, atol=1e-4)
        self.delayDisplay("Test passed")
