"""Readers for real multimodal datasets a user has on disk (nothing is ever downloaded).

Each ``load_*`` returns a :class:`~jaxmm.data.types.DatasetSplits` of host numpy
arrays; per-example problems (missing or corrupt media) drop the example and are
counted in ``ArrayDataset.dropped`` and logged, structural problems (missing
split files, malformed lines) raise with the expected layout. Pass
``strict=True`` to raise on the first bad example instead.

=====================  ===========================================  =====================
reader                 inputs                                       module
=====================  ===========================================  =====================
CREMA-D                ``audio`` log-STFT, ``visual`` frames         :mod:`.crema_d`
CREMA-D-Irony          same, label 6 = audio/video contradiction     :mod:`.irony`
Kinetics-Sounds        ``audio`` spectrogram/fbank, ``visual``       :mod:`.kinetics_sounds`
UCF101                 ``rgb`` frames, ``flow`` stacks               :mod:`.ucf101`
MultiBench affect      ``vision``, ``audio``, ``text`` sequences     :mod:`.multibench`
AV-MNIST               ``image``, ``audio`` spectrogram              :mod:`.avmnist`
Hateful Memes          ``image``, ``text``                           :mod:`.hateful_memes`
UCI multiple features  six feature views                             :mod:`.mfeat`
=====================  ===========================================  =====================
"""
from jaxmm.data.readers.avmnist import load_avmnist
from jaxmm.data.readers.crema_d import load_crema_d
from jaxmm.data.readers.hateful_memes import load_hateful_memes
from jaxmm.data.readers.irony import load_crema_d_irony
from jaxmm.data.readers.kinetics_sounds import load_kinetics_sounds
from jaxmm.data.readers.mfeat import load_mfeat
from jaxmm.data.readers.multibench import load_multibench_affect
from jaxmm.data.readers.ucf101 import load_ucf101
from jaxmm.data.readers.validate import DataFormatError

__all__ = [
    "DataFormatError", "load_avmnist", "load_crema_d", "load_crema_d_irony", "load_hateful_memes",
    "load_kinetics_sounds", "load_mfeat", "load_multibench_affect", "load_ucf101",
]
