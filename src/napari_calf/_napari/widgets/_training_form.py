"""The settings part of the fine-tuning widget: data, model, loss, schedule, device, output.

It only collects values and turns them into a :class:`~napari_calf.config.RunConfig`;
the config validates them (bad values raise ``CalfConfigError`` naming the setting).
"""

from __future__ import annotations

from pathlib import Path

from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from ...config import DataConfig, ModelConfig, RunConfig, TrainConfig
from ...engine.models import ARCHITECTURES

#: Encoders offered in the list (the field is editable: any smp encoder name works and is
#: checked when the run starts). Listing all ~800 names needs smp imported (seconds), so
#: the list holds the ones that suit 2D MRI slices on a workstation, small to large.
COMMON_ENCODERS: tuple[str, ...] = (
    "resnet18",
    "resnet34",
    "resnet50",
    "mobilenet_v2",
    "efficientnet-b0",
    "efficientnet-b2",
    "densenet121",
    "vgg11",
    "mit_b0",
)


def _loss_names() -> tuple[str, ...]:
    # losses imports torch; the widget needs torch to train anyway, and by the time a
    # user opens it napari has started, so this costs nothing at start-up.
    from ...calf.losses import LOSS_NAMES

    return LOSS_NAMES


def device_description() -> tuple[tuple[str, ...], str]:
    """The device choices this machine offers and a line naming its accelerator.

    Returns
    -------
    choices : tuple of str
        ``("auto", "cpu")`` plus ``"cuda"`` / ``"mps"`` where available.
    text : str
        e.g. ``"GPU: NVIDIA H100 80GB HBM3"`` or ``"CPU only"``.
    """
    import torch

    choices = ["auto", "cpu"]
    text = "CPU only"
    if torch.cuda.is_available():
        choices.append("cuda")
        text = f"GPU: {torch.cuda.get_device_name(0)}"
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        choices.append("mps")
        text = "GPU: Apple MPS"
    return tuple(choices), text


class PathField(QWidget):
    """A line edit with a "Browse…" button for a folder (or a file)."""

    def __init__(self, caption: str, *, files: str | None = None, parent=None) -> None:
        super().__init__(parent)
        self._caption = caption
        self._files = files
        self.edit = QLineEdit(self)
        self.button = QPushButton("Browse…", self)
        self.button.clicked.connect(self._browse)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.edit, 1)
        layout.addWidget(self.button)

    def text(self) -> str:
        return self.edit.text().strip()

    def setText(self, text: str) -> None:  # noqa: N802 - Qt naming, like QLineEdit
        self.edit.setText(str(text))

    def _browse(self) -> None:
        start = self.text() or str(Path.home())
        if self._files is None:
            chosen = QFileDialog.getExistingDirectory(self, self._caption, start)
        else:
            chosen, _ = QFileDialog.getOpenFileName(self, self._caption, start, self._files)
        if chosen:
            self.setText(chosen)


class TrainingForm(QWidget):
    """Every setting of a fine-tuning run, with the defaults of the command line."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        defaults = TrainConfig()
        layout = QFormLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        # a narrow dock puts a long row's field under its label instead of overflowing
        layout.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)

        self.data_dir = PathField("Dataset folder (BraTS-style case folders)")
        self.data_dir.edit.setPlaceholderText("dataset folder")
        self.use_analysed = QPushButton("Use analysed")
        self.use_analysed.setToolTip("Take the dataset folder of the imbalance analysis widget "
                                     "(open it from the Plugins menu first).")
        self.data_dir.layout().addWidget(self.use_analysed)
        layout.addRow("Data", self.data_dir)
        self.labels_from = PathField("Folder of corrected label maps (an audit's corrections/)")
        self.labels_from.edit.setPlaceholderText("optional: corrected labels")
        self.labels_from.setToolTip(
            "Label maps that replace a case's own: <folder>/<case>/<label file>, as the "
            "Annotation review dock saves them in AUDIT/corrections. Corrected cases always "
            "train; the originals are never changed.")
        layout.addRow("Labels from", self.labels_from)

        self.arch = QComboBox()
        self.arch.addItems(list(ARCHITECTURES))
        self.encoder = QComboBox()
        self.encoder.setEditable(True)
        self.encoder.addItems(list(COMMON_ENCODERS))
        self.encoder.setCurrentText(ModelConfig().encoder)
        self.encoder.setToolTip("Any segmentation-models-pytorch encoder name; checked at start.")
        self.depth = QSpinBox()
        self.depth.setRange(3, 5)
        self.depth.setValue(ModelConfig().encoder_depth)
        self.depth.setToolTip("Encoder stages: fewer make a smaller, faster network.")
        for combo in (self.arch, self.encoder):  # long names scroll inside, not widen the dock
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(10)
        model_row = QHBoxLayout()
        model_row.addWidget(self.encoder, 1)
        model_row.addWidget(QLabel("depth"))
        model_row.addWidget(self.depth)
        layout.addRow("Model", self.arch)
        layout.addRow("Encoder", model_row)

        self.loss = QComboBox()
        self.loss.addItems(list(_loss_names()))
        self.loss.setCurrentText(defaults.loss)
        self.loss.setToolTip(
            "calf: the transform is chosen from the training split's tumour-size skewness and "
            "kurtosis (shown when the run starts). With Dice weight 1 the 'ln' branch is "
            "BCE-Dice."
        )
        self.selection = QLabel("")
        self.selection.setWordWrap(True)
        self.selection.setStyleSheet("font-weight: bold;")  # theme colours: readable in light and dark
        # fixed: filled in when a run starts, and must not shift the plots below then
        self.selection.setFixedHeight(5 * self.selection.fontMetrics().lineSpacing() + 4)
        layout.addRow("Loss", self.loss)
        layout.addRow(self.selection)  # the whole row wide: its text needs the room

        self.epochs = QSpinBox()
        self.epochs.setRange(1, 10_000)
        self.epochs.setValue(defaults.epochs)
        self.batch_size = QSpinBox()
        self.batch_size.setRange(1, 4096)
        self.batch_size.setValue(defaults.batch_size)
        sched = QHBoxLayout()
        sched.addWidget(QLabel("epochs"))
        sched.addWidget(self.epochs)
        sched.addWidget(QLabel("batch"))
        sched.addWidget(self.batch_size)
        layout.addRow("Schedule", sched)

        self.lr = QDoubleSpinBox()
        self.lr.setDecimals(6)
        self.lr.setRange(1e-6, 1.0)
        self.lr.setSingleStep(1e-4)
        self.lr.setValue(defaults.lr)
        self.val_fraction = QDoubleSpinBox()
        self.val_fraction.setRange(0.01, 0.99)
        self.val_fraction.setSingleStep(0.05)
        self.val_fraction.setValue(DataConfig("x").val_fraction)
        self.val_fraction.setToolTip("Fraction of cases held out for validation (at least one).")
        opt = QHBoxLayout()
        opt.addWidget(QLabel("lr"))
        opt.addWidget(self.lr)
        opt.addWidget(QLabel("val."))
        opt.addWidget(self.val_fraction)
        layout.addRow("Optimiser", opt)

        self.seed = QSpinBox()
        self.seed.setRange(0, 999_999)
        self.seed.setValue(defaults.seed)
        self.max_slices = QSpinBox()
        self.max_slices.setRange(0, 100_000)
        self.max_slices.setSpecialValueText("all")
        self.max_slices.setToolTip("Cap on training slices per case (for quick trial runs).")
        misc = QHBoxLayout()
        misc.addWidget(QLabel("seed"))
        misc.addWidget(self.seed)
        misc.addWidget(QLabel("slices/case"))
        misc.addWidget(self.max_slices)
        layout.addRow("Run", misc)

        choices, text = device_description()
        self.device = QComboBox()
        self.device.addItems(list(choices))
        self.device_label = QLabel(text)
        self.device_label.setWordWrap(True)  # a long GPU name must not widen the dock
        dev = QHBoxLayout()
        dev.addWidget(self.device)
        dev.addWidget(self.device_label, 1)
        layout.addRow("Device", dev)

        self.init = PathField("Checkpoint to fine-tune from", files="Weights (*.safetensors)")
        self.init.edit.setPlaceholderText("optional: run folder or .safetensors")
        layout.addRow("Start from", self.init)
        self.out_dir = PathField("Run folder to create")
        self.out_dir.edit.setPlaceholderText("new run folder")
        layout.addRow("Output", self.out_dir)

    def run_config(self, *, overwrite: bool = False) -> RunConfig:
        """The run these fields describe.

        Raises
        ------
        CalfConfigError
            A field is empty or out of range; the message names it.
        """
        from ...errors import CalfConfigError

        if not self.data_dir.text():
            raise CalfConfigError("No dataset folder. Fix: choose one under 'Data'.")
        if not self.out_dir.text():
            raise CalfConfigError("No output folder. Fix: choose a new run folder under 'Output'.")
        data = DataConfig(
            data_dir=self.data_dir.text(),
            val_fraction=float(self.val_fraction.value()),
            max_slices_per_case=self.max_slices.value() or None,
            labels_from=self.labels_from.text().strip() or None,
        )
        model = ModelConfig(
            arch=self.arch.currentText(),
            encoder=self.encoder.currentText().strip(),
            encoder_depth=int(self.depth.value()),
            init=self.init.text() or None,
        )
        train = TrainConfig(
            loss=self.loss.currentText(),
            epochs=int(self.epochs.value()),
            batch_size=int(self.batch_size.value()),
            lr=float(self.lr.value()),
            seed=int(self.seed.value()),
            device=self.device.currentText(),
        )
        return RunConfig(data=data, out_dir=self.out_dir.text(), model=model, train=train,
                         overwrite=overwrite)
