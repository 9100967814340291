"""Samplers of the noisy circuit: node voltages drawn from its stationary distribution.

The circuit with injected thermal noise (:mod:`eqspice.circuits.noise`) obeys

    C dv/dt = -grad E(v) + i_noise(t),        E = co-content + beta L   (watts),

on its free nodes.  A sampler returns ``v[batch, sample, node]`` (volts): for
each input row, ``spec.samples`` readings after the burn-in.  Averages over
the sample axis are the controller's time averages.

* :func:`langevin_samples`: Euler-Maruyama on that equation, batched, with the
  noise held constant over each step ``dt_sec`` (the same low-frequency PSD as
  ngspice's trnoise).  Its stationary variance of a mode with time constant
  ``tau`` is too large by ``dt / (2 tau)`` (first order); the test and
  ``eqspice gradcheck noise`` report that bias.
* :func:`gaussian_samples`: for circuits without diodes, exact independent
  draws from the stationary Gaussian: mean = the DC solution, covariance
  :func:`stationary_covariance` (gibbs: ``T_eff H^-1``; johnson: the solution
  of the Lyapunov equation, ``k T C^-1`` when no controlled source acts).
* :func:`eqspice.simulator.sampling.block_gibbs.block_gibbs_samples`: for the gibbs model on a
  layered (bipartite) circuit, an exact Markov chain on ``exp(-E / T_eff)``:
  the two colour classes drawn in turn, each node by Metropolis-Hastings with
  a Gaussian proposal at its conditional mode (no time step, no step bias).
* :class:`NgspiceSampler`: a transient run of the netlist with trnoise sources
  and node capacitors in a supervised ngspice child, read at the same times.
"""

from eqspice.simulator.sampling.block_gibbs import block_gibbs_samples
from eqspice.simulator.sampling.co_content import CoContent, SamplingError
from eqspice.simulator.sampling.gaussian import gaussian_samples, stationary_covariance
from eqspice.simulator.sampling.langevin import langevin_samples
from eqspice.simulator.sampling.native import NativeSampler

__all__ = [
    "CoContent",
    "NativeSampler",
    "SamplingError",
    "block_gibbs_samples",
    "gaussian_samples",
    "langevin_samples",
    "stationary_covariance",
]
