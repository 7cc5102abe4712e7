"""The run the committed stand-in (models/stand-in) comes from: `oss-edge train` with these defaults."""

DEFAULT_STEPS = 420  # about 45 minutes on two cores
DEFAULT_THREADS = 2
DEFAULT_SEED = 0
# The stand-in's recommended sampling, in its generation_config.json (the export carries it into the model folder,
# and the daemon samples explanations with it): a model this small wanders off at gpt-oss's temperature of 1.
SAMPLING = {"temperature": 0.3, "top_p": 0.9}
