"""The loss of each objective in LaTeX, for the objective explorer's ``st.latex``.

Written from the docstrings of ``lakelab.objectives`` (the code is the reference): S(y) is the
summed, A(y) the mean log-prob of a response, w chosen, l rejected, sigma the logistic function.
DPO is shown in its default "sigmoid" variant without label smoothing.
"""

FORMULAS = {
    "sft": r"\mathcal{L}_{\mathrm{SFT}} = -A(y_w), \qquad "
    r"A(y) = \frac{1}{|y|} \sum_t \log \pi_\theta(y_t \mid x, y_{<t})",
    "ift": r"\mathcal{L}_{\mathrm{IFT}} = \frac{1}{N} \sum_{i=1}^{N} W_i \,"
    r"\bigl(-\log \pi_\theta(y_i \mid \tilde{s}_i)\bigr), \quad "
    r"\tilde{s}_i = (1 - \lambda)\, s_i + \lambda\, \pi_\theta(s_{i-1}), \quad "
    r"W_i \propto \sum_{j \ge i} \gamma^{\,j - i} c_j",
    "dpo": r"\mathcal{L}_{\mathrm{DPO}} = -\log \sigma\Bigl(\beta \bigl[(S_w - S^{\mathrm{ref}}_w)"
    r" - (S_l - S^{\mathrm{ref}}_l)\bigr]\Bigr), \qquad "
    r"S(y) = \sum_t \log \pi_\theta(y_t \mid x, y_{<t})",
    "ipo": r"\mathcal{L}_{\mathrm{IPO}} = \Bigl(h - \frac{1}{2 \beta}\Bigr)^2, \qquad "
    r"h = (A_w - A^{\mathrm{ref}}_w) - (A_l - A^{\mathrm{ref}}_l)",
    "orpo": r"\mathcal{L}_{\mathrm{ORPO}} = -A_w - \lambda \log \sigma\bigl("
    r"\operatorname{logodds}(y_w) - \operatorname{logodds}(y_l)\bigr), \qquad "
    r"\operatorname{logodds}(y) = A(y) - \log\bigl(1 - e^{A(y)}\bigr)",
    "asft": r"\mathcal{L}_{\mathrm{ASFT}} = -A_w - \lambda \bigl[\log \sigma\bigl(\beta "
    r"\operatorname{logodds}(y_w)\bigr) + \log \sigma\bigl(-\beta "
    r"\operatorname{logodds}(y_l)\bigr)\bigr]",
    "simpo": r"\mathcal{L}_{\mathrm{SimPO}} = -\log \sigma\bigl(\beta (A_w - A_l) - \gamma\bigr)",
}
