# Written by lpft (https://arxiv.org/abs/2405.16747 §3's classifier): the encoder's final hidden
# state of the first token, then one linear layer (no pooler, no dropout at inference). Loads with
#   AutoModelForSequenceClassification.from_pretrained(dir, trust_remote_code=True)
# and pipeline("text-classification", model=dir, trust_remote_code=True).
import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.models.{module}.modeling_{module} import {encoder}


class LpftForSequenceClassification(PreTrainedModel):
    config_class = {encoder}.config_class
    base_model_prefix = "{prefix}"

    def __init__(self, config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.{prefix} = {encoder}(config, add_pooling_layer=False)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def _init_weights(self, module):
        self.{prefix}._init_weights(module)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        inputs = dict(input_ids=input_ids, attention_mask=attention_mask)
        if token_type_ids is not None and "{prefix}" != "mpnet":
            inputs["token_type_ids"] = token_type_ids
        hidden = self.{prefix}(**inputs).last_hidden_state
        logits = self.classifier(hidden[:, 0])
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1))
        return SequenceClassifierOutput(loss=loss, logits=logits)
