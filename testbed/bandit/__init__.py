"""QuickGrasp's adaptive token-density configurator (seed 000 SIII-C), pure and numpy-only online.

- `features`: the context vector c of Eq. 4-10 (uncertainty, PCA-projected embeddings,
  clip relevance, spectral complexity), batched over queries;
- `backbone`: the MLP phi(c) -> u trained offline (torch, imported lazily inside the training
  function only), evaluated online in numpy from exported weights;
- `agents`: one interface (`Agent.select` / `Agent.update`) and the fixed-density,
  epsilon-greedy, LinUCB, neural-linear Thompson and oracle agents;
- `ope`: decision logs and off-policy evaluation (IPS, doubly robust) with 95% intervals;
- `persist`: saving and restoring an agent's learned state and its random generator;
- `profiling`: run start, fitting all of the above on the profiling split (`fit_profiling`,
  `make_agent`), and the fit saved next to a run's decision logs (`save_profiling`);
- `online`: one adaptive policy's learner during a run (`BanditRun`: context, choose, learn, the
  decision log) and how a run starts it (`fit_records`, `start_run`).

Importing this package loads neither torch nor matplotlib, reads no clock and opens no file.
"""

from testbed.bandit.agents import (
    AGENTS,
    Agent,
    CostModel,
    Decision,
    EpsilonGreedy,
    FixedDensity,
    LinearPosteriors,
    LinUCB,
    NeuralLinearThompson,
    Oracle,
    RawFeatures,
    instant_regret,
    proxy_success,
)
from testbed.bandit.backbone import Backbone, full_information, load_backbone, save_backbone, train_backbone
from testbed.bandit.errors import BanditFileError, CorruptFileError, MismatchError
from testbed.bandit.features import (
    CONTEXT_FIELDS,
    PCA,
    ContextBuilder,
    context_dim,
    context_vector,
    fit_context_builder,
    fit_pca,
    pca_transform,
    relevance_and_complexity,
    spectral_entropy,
    uncertainty_features,
)
from testbed.bandit.ope import (
    DecisionLog,
    DecisionLogger,
    Estimate,
    doubly_robust,
    hindsight_value,
    ips,
    load_log,
    save_log,
    target_probs,
)
from testbed.bandit.persist import load_agent_state, save_agent_state
from testbed.bandit.profiling import (
    AGENT_KINDS,
    Profiling,
    correctness_matrix,
    fit_profiling,
    load_profiling,
    make_agent,
    save_profiling,
)
from testbed.bandit.online import BanditRun, fit_records, sampled_frames, start_run

__all__ = [
    "AGENTS", "AGENT_KINDS", "Agent", "Backbone", "BanditRun", "BanditFileError",
    "CONTEXT_FIELDS", "ContextBuilder", "CorruptFileError",
    "CostModel", "Decision", "DecisionLog", "DecisionLogger", "EpsilonGreedy", "Estimate", "FixedDensity",
    "LinUCB", "LinearPosteriors", "MismatchError", "NeuralLinearThompson", "Oracle", "PCA", "Profiling",
    "RawFeatures", "context_dim", "context_vector", "correctness_matrix", "doubly_robust", "fit_context_builder",
    "fit_pca", "fit_profiling", "fit_records", "full_information", "load_profiling", "make_agent",
    "sampled_frames", "save_profiling", "start_run",
    "hindsight_value", "instant_regret", "ips", "load_agent_state", "load_backbone", "load_log", "pca_transform",
    "proxy_success", "relevance_and_complexity", "save_agent_state", "save_backbone", "save_log",
    "spectral_entropy", "target_probs", "train_backbone", "uncertainty_features",
]
