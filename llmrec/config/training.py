"""The per-stage groups of :class:`llmrec.config.Config` that train and evaluate models: the trained
retriever (``sasrec``), the trained ranker (``rank``, flat prefix ``ranker_``), the modality projector
(``projector``) and the evaluation harness (``eval``). Each key's default, docstring and check beside it;
the stage that reads a group checks its training budget further (e.g. ``llmrec.retrieval.train.check_config``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, field_validator

from llmrec.config._types import Float, Int, IntList, PathT, Str, StrList, check_subset
from llmrec.config.groups import Group


class SasrecConfig(Group):
    """The trained retriever (SASRec, ``llmrec.retrieval.sasrec``)."""

    seeds: IntList = Field(default_factory=lambda: [0, 1, 2])
    """Seeds trained; the seed with the best VALIDATION NDCG@10 becomes the retriever."""
    max_len: Int = 200
    """Most recent items SASRec reads (training window)."""
    dim: Int = 128
    """SASRec hidden size = item/user vector dimension."""
    blocks: Int = 2
    """Transformer blocks."""
    heads: Int = 2
    """Attention heads."""
    dropout: Float = 0.3
    """Dropout rate."""
    lr: Float = 1e-3
    """Adam learning rate."""
    weight_decay: Float = 0.0
    """AdamW weight decay."""
    batch_size: Int = 32
    """Training windows per step (32 converged faster per CPU-second than 128 on ml-latest-small)."""
    max_epochs: Int = 200
    """Upper bound on epochs."""
    patience: Int = 6
    """Early stopping: epochs without a better validation NDCG@10."""
    max_minutes: Float = 180.0
    """Safety cap on training wall time per seed; training is budgeted by epochs (``sasrec_max_epochs``,
    ``sasrec_patience``). A run the cap stops is reported as such (its numbers depend on the machine)."""
    bf16: bool = False
    """bfloat16 autocast in SASRec training (faster only on CPUs/GPUs with native bf16; changes results)."""

class RankConfig(Group):
    """The trained ranker (``llmrec train-ranker``, ``llmrec.rank.train``) and the zero-shot ranker's
    modalities. Flat keys: ``ranker_<key>`` (``ranker`` itself is a top-level key)."""

    FLAT_PREFIX: ClassVar[str | None] = "ranker"

    modalities: StrList = Field(default_factory=list)
    """Modalities (``image``, ``audio``) the zero-shot ranker sees as soft tokens: each item's vector
    through the store's trained projector (``llmrec train-projector``) in place of its caption or
    transcript; items without a vector keep the text fallback. Empty: text fallback only."""
    dir: PathT | None = None
    """Folder of the trained ranker checkpoint. Default: ``{home}/rankers/{dataset}`` for the harness
    (``-u{N}`` for user-capped runs, ``-text`` without soft tokens)."""
    history: Int = 10
    """Most recent history items shown in the trained ranker's prompt (titles + soft tokens)."""
    examples: Int = 800
    """Training examples (a target sliding over each user's training sequence, users round-robin)."""
    epochs: Int = 1
    """Passes over the training examples."""
    batch_size: Int = 4
    """Examples per optimiser step (one padded forward pass)."""
    lr: Float = 2e-4
    """AdamW learning rate of the LoRA adapter (linear warm-up over 5% of the steps, then linear decay)."""
    projector_lr: Float = 1e-3
    """AdamW learning rate of the soft-token projector."""
    lora_r: Int = 8
    """LoRA rank (alpha = 2 r) on the attention and MLP projections."""
    lora_layers: Int = 0
    """LoRA on the top N decoder layers only; 0: all layers."""
    soft_tokens: bool = True
    """Collaborative soft tokens (LLaRA): each item's retriever vector through the projector beside its title."""
    soft_k: Int = 1
    """Soft tokens per item."""
    eval_every: Int = 200
    """Training examples between validations (best checkpoint kept; early stopping)."""
    patience: Int = 2
    """Early stopping: validations without a better validation NDCG@10."""
    valid_users: Int = 200
    """Validation users (those whose validation target is among the retriever's candidates)."""
    max_minutes: Float = 150.0
    """Safety cap on training wall time; training is budgeted by examples and epochs. A run the cap
    stops is reported as such."""

    @field_validator("modalities")
    @classmethod
    def _modalities(cls, v: list[str]) -> list[str]:
        return check_subset(v, ("image", "audio"))


class ProjectorConfig(Group):
    """The modality projector (``llmrec train-projector``, ``llmrec.projector``)."""

    dir: PathT | None = None
    """Folder of the trained projectors, one sub-folder per modality (``image/``, ``audio/``).
    Default: ``{data_dir}/projectors``."""
    k: Int = 4
    """Soft tokens per item vector."""
    text_input: bool = False
    """The projector reads the modality vector followed by the text encoder's vector of the item's
    fallback text (an image's caption: its OCR text and labels; an audio clip's transcript), zeros
    where there is none (``llmrec.projector.inputs``). The checkpoint records it in its encoder id."""
    hidden: Int = 1024
    """Width of the projector's hidden layer."""
    epochs: Int = 1
    """Passes over the training items (early stopping on the held-out cross-entropy). 1 is what was
    measured (eval/RESULTS.md: 17 minutes for ml-100k's 1,394 posters here); more is untested."""
    batch_size: Int = 16
    """Items per optimiser step."""
    lr: Float = 1e-3
    """AdamW learning rate (linear warm-up over 5% of the steps, then linear decay)."""
    holdout: Float = 0.1
    """Share of the items never trained on: they choose the epoch kept and measure the quality."""
    candidates: Int = 20
    """Quality measure: titles the held-out item's own title is ranked among (chance 1/N)."""
    eval_items: Int = 100
    """Quality measure: at most this many held-out items (each costs ``projector_candidates`` sequences)."""
    patience: Int = 2
    """Early stopping: epochs without a better held-out cross-entropy."""
    max_minutes: Float = 90.0
    """Safety cap on training wall time; training is budgeted by epochs. A run the cap stops says so."""

class EvalConfig(Group):
    """Evaluation (``llmrec eval``; configs in eval/*.yaml)."""

    systems: StrList = Field(
        default_factory=lambda: ["most-popular", "item-knn", "text-embedding", "sasrec"])
    """Systems evaluated, in report order: ``most-popular``, ``item-knn``, ``text-embedding``,
    ``ease`` (Steck 2019; L2 strength and recency chosen on validation), ``sasrec`` (the trained
    retriever: each of ``sasrec_seeds``, and the seed with the best validation NDCG@10 as
    ``sasrec``), ``sasrec-ensemble`` (sum of the scores of all seeds), ``fusion`` (``eval_fusion``'s
    members, weighted on validation)."""
    protocols: StrList = Field(default_factory=lambda: ["full", "sampled"])
    """``full``: full ranking, leave-one-out (LlamaRec); ``sampled``: target + negatives (LLaRA)."""
    stage: Str = "test"
    """Targets scored in the report: ``test`` (history = train + validation) or ``valid``."""
    max_users: Int = 0
    """If > 0, keep only the first N users (ascending id) before 5-core filtering (CI runs)."""
    bootstrap: Int = 1000
    """Bootstrap resamples over users for the 95% intervals."""
    negatives: Int = 19
    """Sampled protocol: negatives per user (LLaRA: 19, i.e. 20 candidates)."""
    ranker: Str | None = None
    """Optional ranker applied to ``eval_ranker_retriever``'s top ``candidates``: ``module:factory``,
    where ``factory(cfg)`` returns an object with ``name`` and ``rank(history_items,
    candidate_items) -> scores | None`` (see ``llmrec.eval.protocols.Ranker``)."""
    ranker_retriever: Str = "sasrec"
    """The system whose top candidates the ranker reorders."""
    llm: StrList = Field(default_factory=list)
    """LLM rankers over ``eval_ranker_retriever``'s candidates (``llmrec.eval.llm_systems``): ``zero-shot``,
    ``trained`` (trained when missing), ``trained-text`` (without soft tokens); each alone and fused."""
    llm_bias_users: Int = 100
    """Position bias: test users whose candidates are also ranked reversed and shuffled."""
    modal: StrList = Field(default_factory=list)
    """Modality ablation (``llmrec.eval.modal_systems``): the zero-shot ranking LLM of ``recommend``
    (``prompts/rank.*``) over ``eval_ranker_retriever``'s candidates, each item shown as ``text``
    (title and genres only), ``image`` (+ its poster's soft tokens through ``eval_modal_store``'s
    trained projector) or ``caption`` (+ its poster's caption as text); each alone and fused."""
    modal_store: PathT | None = None
    """A store of the same data set with poster vectors and captions (``llmrec ingest --images``) and
    a trained image projector (``llmrec train-projector``): the content of ``eval_modal`` and of the
    ``cold-items`` protocol's image system."""
    modal_users: Int = Field(0, ge=0)
    """If > 0, the modality ablation and its slices cover only the first N users (ascending id)."""
    sparse_max: Int = Field(10, ge=0)
    """Sparse slice of the report: users whose target has at most this many training interactions."""
    cold_share: Float = Field(0.1, gt=0, lt=1)
    """``cold-items`` protocol: share of the items held out of every training interaction."""
    cold_llm_users: Int = Field(0, ge=0)
    """``cold-items`` protocol: cold test users also ranked by the LLM on LLaRA's sampled candidates
    (text, and + poster soft tokens when ``eval_modal_store`` is set); 0: none."""
    out: Str | None = None
    """Output folder of ``llmrec eval``. Default: ``{home}/eval/{config file stem}``."""
    reference: Str = "sasrec-ensemble"
    """The system every other one is compared with by a paired bootstrap of the per-user difference."""
    fusion: StrList = Field(default_factory=lambda: ["sasrec-ensemble", "ease", "item-knn"])
    """Members of the ``fusion`` system: standardised scores summed with weights chosen on validation."""

    @field_validator("modal")
    @classmethod
    def _modal(cls, v: list[str]) -> list[str]:
        return check_subset(v, ("text", "image", "caption"))
