"""The phase performance model, one concept per module (public names re-exported by
:mod:`characterize.modeling.phase_model`, which documents the model):

- :mod:`.errors`: PhaseModelError, ExtrapolationWarning;
- :mod:`.numerics`: non-negative least squares (scipy) in relative error;
- :mod:`.latency`: the prefill and decode latency forms and their fits;
- :mod:`.power`: the saturating power curve and its fit;
- :mod:`.held_out`: leave-one-point-out errors;
- :mod:`.model`: the fitted :class:`PhaseModel` (hot-path queries);
- :mod:`.fit`: :func:`fit_phase_model` (latency, power, fallback power, the report);
- :mod:`.calibration`: a harness model calibrated to another engine;
- :mod:`.model_set`: :class:`PhaseModelSet`, :func:`fit_all`, :func:`load_phase_models`.

torch-free (numpy, pandas, scipy).
"""
