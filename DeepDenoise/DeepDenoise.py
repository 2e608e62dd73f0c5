"""DeepDenoise, the 3D Slicer module: the panel's wiring and a Logic that runs DeepDenoiseLib in a
background process. What the panel decides, the settings, the jobs on nodes and the self-test's checks
are DeepDenoiseLib.slicer's, tested there without Qt."""

import logging
import os
import shutil
import sys
import unittest

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
# Testing/slicer/test_module_startup.py); runs import them, or run them in the worker.
from DeepDenoiseLib.slicer import support as slicer_support  # noqa: E402

# On a Slicer older than the minimum the module still loads, and its panel says which Slicer it needs.
SLICER_VERSION_PROBLEM = slicer_support.slicer_version_problem(slicer.app.majorVersion, slicer.app.minorVersion)
_, Choice, WithinRange, parameterNodeWrapper = slicer_support.slicer_module_api(SLICER_VERSION_PROBLEM)

from DeepDenoiseLib.core.progress import Cancelled  # noqa: E402
from DeepDenoiseLib.slicer import self_test  # noqa: E402
from DeepDenoiseLib.slicer.logic import ModuleLogic  # noqa: E402
from DeepDenoiseLib.slicer.panel import (  # noqa: E402
    apply_tooltip,
    chosen_model,
    model_choices,
    parameters_after_run,
    parameters_for_method,
    plan_run,
)
from DeepDenoiseLib.slicer.panel_view import panel_view  # noqa: E402
from DeepDenoiseLib.slicer.parameter_node import parameter_node_class  # noqa: E402
from DeepDenoiseLib.slicer.sequences import shown_node  # noqa: E402
from DeepDenoiseLib.slicer.superres_panel import plan_superres_run, superres_parameters_after_run, superres_summary_text, superres_tooltip  # noqa: E402

HOMEPAGE = "https://github.com/deepdenoise/SlicerDeepDenoise"
TORCH_REQUIREMENT = ">=2.0"
REQUIREMENTS_PATH = os.path.join(os.path.dirname(__file__), "Resources", "requirements.txt")


#
# DeepDenoise
#


class DeepDenoise(ScriptedLoadableModule):
    """Self-supervised deep-learning denoising (blind-spot Noise2Void and its kin) and super-resolution of
    the volume in view."""

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
            "<li><b>Pretrained R2R</b> (default): a network that ships with the extension, pretrained on "
            "synthetic volumes and told the volume's estimated noise level, is trained further on the volume "
            "itself (Recorrupted-to-Recorrupted) until it stops improving; if it cannot beat the input on "
            "held-out patches, the input is returned with a warning. 2D with neighbouring slices as context.</li>"
            "<li><b>Blind-spot N2V</b>: a network that never sees the voxel it predicts learns "
            "from every voxel, then fuses its prediction with the voxel's noisy value under the noise "
            "model. 2D only, with neighbouring slices as context.</li>"
            "<li><b>N2V</b> (Noise2Void): hides a few voxels in each patch and learns to predict them from "
            "their surroundings; 2D or 3D.</li>"
            "<li><b>N2V2</b>: N2V with blur-pooling and median replacement, which avoid checkerboard "
            "artefacts.</li>"
            "<li><b>structN2V</b>: hides a short line of voxels instead of one, for noise correlated along "
            "an axis (streaks).</li>"
            "<li><b>MP-PCA (series)</b> (default for a sequence): no network; local PCA across all frames "
            "with the Marchenko-Pastur noise threshold, as dipy's mppca. Sequences only (at least 10 frames); "
            "it keeps no model.</li>"
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
# DeepDenoiseParameterNode: the panel's state, saved with the scene. Its fields are declared by the
# settings tables (DeepDenoiseLib/slicer/parameter_node.py, which lists them).
#

DeepDenoiseParameterNode = parameterNodeWrapper(parameter_node_class(Choice, WithinRange, vtkMRMLScalarVolumeNode))


#
# DeepDenoiseWidget
#

#: Settings that panel.enabled_settings names but no SlicerParameterName binds, and their widgets.
UNBOUND_SETTING_WIDGETS = {"savedModel": "savedModelComboBox"}
#: A QComboBox item whose flags (kept in this role) are zero is shown greyed and cannot be chosen.
ITEM_FLAGS_ROLE = qt.Qt.UserRole - 1


class DeepDenoiseWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: binds the .ui to the parameter node and turns Apply into Cancel while a run goes on.
    What is enabled or shown, which model name to suggest and what the buttons run are decided in
    DeepDenoiseLib.slicer (panel_view.py, panel.py, superres_panel.py)."""

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
        self._seriesRun = False
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
        for section in (self.ui.inputsCollapsibleButton, self.ui.methodCollapsibleButton, self.ui.modelCollapsibleButton,
                        self.ui.budgetCollapsibleButton, self.ui.outputsCollapsibleButton, self.ui.advancedCollapsibleButton,
                        self.ui.superresSettingsFrame):  # fmt: skip
            section.enabled = not running
        parameters = self._parameterNode
        if parameters:
            view = panel_view(parameters, self._suggestedModelName, self._seriesRun)
            self._seriesRun = view.series
            for name, value in view.parameters.items():  # the method follows the input: MP-PCA for a sequence
                setattr(parameters, name, value)
            for name, isEnabled in view.enabled.items():
                self._settingWidgets[name].enabled = isEnabled
            for name, isVisible in view.visible.items():
                for widget in (self._settingWidgets[name], self._settingLabels.get(name)):
                    if widget is not None:
                        widget.visible = isVisible
            self.ui.denoiseSequenceCheckBox.visible = view.sequence_option is not None
            if view.sequence_option is not None:
                self.ui.denoiseSequenceCheckBox.text = view.sequence_option
            self.ui.sequenceOutputsLabel.visible = view.sequence_outputs
            self._suggestedModelName = view.suggestion
            if view.model_name is not None:
                parameters.saveModelName = view.model_name
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
        """A 2D-only method (Pretrained R2R, Blind-spot N2V) switches the dimensions to 2D; a paired method, which
        keeps no model, unticks saving."""
        if self._parameterNode:
            for name, value in parameters_for_method(self._parameterNode.method).items():
                setattr(self._parameterNode, name, value)

    def onComputeUncertaintyClicked(self, checked) -> None:
        """The uncertainty is the spread across test-time augmentations: asking for it turns them on."""
        if checked and self._parameterNode:
            self._parameterNode.testTimeAugmentation = True

    def onApplyButton(self) -> None:
        def start():
            run = plan_run(self._parameterNode, self.logic.savedModels(), self.logic.modelFolder())
            replace = _("A saved model already has this name ({path}). Replace it with the model this run trains?")
            if run.replaces_model is not None and not slicer.util.confirmOkCancelDisplay(replace.format(path=run.replaces_model)):
                return False
            self.logic.process(
                **run.process_arguments(), waitForCompletion=False, progressCallback=self.onProgress, completedCallback=self.onCompleted
            )
            self._run = run
            return True

        missing = _("Denoising needs PyTorch and a few Python packages, and some are not installed: press Apply to install them.")
        self._startRun(start, _("Could not start denoising."), missing)

    def onSuperResolveButton(self) -> None:
        def start():
            run = plan_superres_run(self._parameterNode)
            self.logic.superResolve(
                **run.logic_arguments(),
                waitForCompletion=False,
                progressCallback=self.onProgress,
                completedCallback=self.onSuperResCompleted,
            )
            self._superresRun = run
            return True

        missing = _(
            "Super-resolution needs PyTorch and a few Python packages, and some are not installed: press Super-resolve to install them."
        )
        self._startRun(start, _("Could not start super-resolution."), missing)

    def _startRun(self, start, failureTitle, missingPackages) -> None:
        """The Apply and Super-resolve buttons: Cancel while a run goes on; else install what is missing
        (asking first) and ``start()`` the run, which says whether it started."""
        if self.logic.isRunning:
            self.logic.cancel()
            return
        with slicer.util.tryWithErrorDisplay(failureTitle, waitCursor=True):
            if not self.logic.ensureDependencies():
                self._showIdle(missingPackages)
                return
            if start():
                self.ui.progressBar.value = 0
                self.ui.progressBar.format = _("starting %p%")
                self.ui.statusLabel.text = _("Running in the background; you can keep working.")
        self._updateGui()

    def onSuperResCompleted(self, result, error) -> None:
        run, self._superresRun = self._superresRun, None
        if error is None:
            self._showDone(superres_parameters_after_run(run, result) if run is not None else {}, superres_summary_text(result.summary))
        else:
            self._showFailure(error, _("Super-resolution failed: {message}"))
        self._updateGui()

    def onCompleted(self, result, error) -> None:
        run, self._run = self._run, None
        if error is None:
            if run is not None and run.save_model_path is not None:
                self.onRefreshModels()
            self._showDone(parameters_after_run(run, result) if run is not None else {}, self.logic.summaryText(result.summary))
        else:
            self._showFailure(error, _("Denoising failed: {message}"))
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

    def _showDone(self, parameters, status) -> None:
        """The finished run's nodes into the parameter node, its summary into the status line."""
        if self._parameterNode:
            for name, value in parameters.items():
                setattr(self._parameterNode, name, value)
        self.ui.progressBar.value = 100
        self.ui.progressBar.format = _("done")
        self.ui.statusLabel.text = status

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


class DeepDenoiseLogic(ScriptedLoadableModuleLogic, ModuleLogic):
    """Runs DeepDenoiseLib on volume nodes in a background process; usable without the panel. Its runs
    (process, superResolve, cancel, savedModels, ensureDependencies...) are DeepDenoiseLib.slicer.logic
    .ModuleLogic's; this class gives it Slicer's Qt timer, Python, temporary folder, views and dialogs::

        import DeepDenoise
        logic = DeepDenoise.DeepDenoiseLogic()
        denoised = logic.process(getNode("MRHead"), None, {"method": "N2V2", "budgetMinutes": 2})
        denoised = logic.process(getNode("MRHead"), None, {"testTimeAugmentation": True}, computeUncertainty=True)
        uncertainty = logic.lastResult.uncertainty_node
        fine = logic.superResolve(getNode("thick"), {"mode": "Self-supervised", "factor": 4})
    """

    POLL_INTERVAL_MS = 200

    def __init__(self) -> None:
        if SLICER_VERSION_PROBLEM:
            raise RuntimeError(SLICER_VERSION_PROBLEM)
        ScriptedLoadableModuleLogic.__init__(self)
        self._timer = qt.QTimer()
        self._timer.setInterval(self.POLL_INTERVAL_MS)
        ModuleLogic.__init__(self, self._timer, LIBRARY_PARENT, REQUIREMENTS_PATH, TORCH_REQUIREMENT)
        self._timer.connect("timeout()", self.poll)

    def getParameterNode(self):
        return DeepDenoiseParameterNode(super().getParameterNode())

    def workerPython(self) -> str:
        """PythonSlicer: Slicer's Python interpreter as a separate process (it sees the same packages)."""
        pythonSlicer = shutil.which("PythonSlicer")
        if not pythonSlicer:
            raise RuntimeError(_("PythonSlicer was not found; the background worker cannot start."))
        return pythonSlicer

    def temporaryFolder(self):
        return slicer.app.temporaryPath

    def showResult(self, inputVolume, outputVolume) -> None:
        """Input in the background, result in the foreground at half opacity: the slice views' fade
        slider then compares the two (for sequences, their current frames)."""
        slicer.util.setSliceViewerLayers(background=shown_node(inputVolume), foreground=shown_node(outputVolume), foregroundOpacity=0.5)

    def confirmInstall(self, missing) -> bool:
        message = _("DeepDenoise needs these Python packages: {packages}. Install them now?").format(packages=", ".join(missing))
        return slicer.util.confirmOkCancelDisplay(message)


#
# DeepDenoiseTest
#


class DeepDenoiseTest(ScriptedLoadableModuleTest):
    """Self-test on a small synthetic volume with a budget of seconds (Developer Tools > Reload and Test);
    the checks are DeepDenoiseLib/slicer/self_test.py's. It installs nothing: without PyTorch the runs
    in the background worker are skipped, saying why."""

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

    def test_RefusesLabelMap(self):
        self_test.refuses_label_map(self, DeepDenoiseLogic())

    def test_RefusesSettingsThatDoNotGoTogether(self):
        self_test.refuses_settings_that_do_not_go_together(self, DeepDenoiseLogic())

    def test_DenoisesAndCancels(self):
        self_test.denoises_and_cancels(self, DeepDenoiseLogic(), REQUIREMENTS_PATH)

    def test_SavesAModelAndAppliesIt(self):
        self_test.saves_a_model_and_applies_it(self, DeepDenoiseLogic(), REQUIREMENTS_PATH)

    def test_SuperResolvesOntoTheFinerGrid(self):
        self_test.super_resolves_onto_the_finer_grid(self, DeepDenoiseLogic(), REQUIREMENTS_PATH)
