"""Reference architectures with the real checkpoint layouts (DESIGN 3).

``gpt2``, ``llama``, ``bert`` and ``vit`` mirror transformers' module trees, so their parameter
names are the Hugging Face checkpoint keys; ``from_pretrained`` / ``save_pretrained`` read and
write local Hugging Face directories and ``generate`` decodes with a KV cache in one jitted scan.
``resnet18/34/50`` carry torchvision's names; ``gpt`` is a tiny GPT with PyTorch-style names.

>>> import jax
>>> from tlean import models, nn
>>> net = jax.eval_shape(lambda: nn.run(0, models.resnet18(num_classes=10)))  # shapes only
>>> net.num_params()
11181642
"""

from tlean.models._bert import BertConfig as BertConfig
from tlean.models._bert import bert as bert
from tlean.models._generate import generate as generate
from tlean.models._gpt import GPT as GPT
from tlean.models._gpt import gpt as gpt
from tlean.models._gpt2 import Conv1D as Conv1D
from tlean.models._gpt2 import GPT2Config as GPT2Config
from tlean.models._gpt2 import gpt2 as gpt2
from tlean.models._hub import Family as Family
from tlean.models._hub import from_pretrained as from_pretrained
from tlean.models._hub import save_pretrained as save_pretrained
from tlean.models._llama import LlamaConfig as LlamaConfig
from tlean.models._llama import llama as llama
from tlean.models._resnet import ResNet as ResNet
from tlean.models._resnet import resnet18 as resnet18
from tlean.models._resnet import resnet18_layer as resnet18_layer
from tlean.models._resnet import resnet34 as resnet34
from tlean.models._resnet import resnet34_layer as resnet34_layer
from tlean.models._resnet import resnet50 as resnet50
from tlean.models._resnet import resnet50_layer as resnet50_layer
from tlean.models._vit import ViTConfig as ViTConfig
from tlean.models._vit import vit as vit

__all__ = sorted(name for name in dir() if not name.startswith("_"))
