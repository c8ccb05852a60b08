"""The 3D CNN: architectures, training, the scikit-learn classifier, weights files, devices."""

from rsxai.cnn.architectures import MapCNN3D, build_model
from rsxai.cnn.classifier import CNNClassifier
from rsxai.cnn.cost import count_parameters, flops_per_volume
from rsxai.cnn.inputs import crop_box, maps_to_volumes, volumes_to_maps
from rsxai.cnn.runtime import resolve_device, torch_threads
from rsxai.cnn.training import train_cnn
from rsxai.cnn.weights import read_weights, write_weights

__all__ = [
    "CNNClassifier",
    "MapCNN3D",
    "build_model",
    "count_parameters",
    "crop_box",
    "flops_per_volume",
    "maps_to_volumes",
    "read_weights",
    "resolve_device",
    "torch_threads",
    "train_cnn",
    "volumes_to_maps",
    "write_weights",
]
