"""Models from and for other tools: TIAToolbox PCam classifiers and WSInfer model folders.

- `tiatoolbox.py`: a TIAToolbox `vanilla.CNNModel` state dict (`resnet18-pcam.pth`, ...) -> a
  pcam-scan checkpoint of `torchvision-resnet18|34|50`.
- `wsinfer_config.py`: WSInfer's `config.json`, checked against the model-config JSON schema that
  the wsinfer-zoo package ships, and its mapping to and from pcam-scan's model metadata.
- `wsinfer_export.py`: a checkpoint -> a WSInfer model folder (TorchScript + config.json).
- `wsinfer_import.py`: a WSInfer model folder -> a checkpoint, when pcam-scan can honour it.
- `torchscript.py`: TorchScript written and loaded (WSInfer's model format).

Sources checked and conventions followed: docs/interop.md.

Every import writes an ordinary safetensors checkpoint (nothing here is needed to scan with it),
and records where the weights came from in its provenance.
"""
