"""The works the report cites, and numbered citations in order of first use."""

from __future__ import annotations

from rsxai.report.html import escape

REFERENCES: dict[str, str] = {
    "shimano2025": "Shimano K, Hattori T, Yasuda E, Hase T, Kina S, Miyake T, Yokota T. "
    "Explainable machine learning algorithm for classifying resting-state functional MRI "
    "in amyotrophic lateral sclerosis. 2025.",
    "abraham2014": "Abraham A, Pedregosa F, Eickenberg M, et al. Machine learning for "
    "neuroimaging with scikit-learn. Front Neuroinform 2014;8:14.",
    "pedregosa2011": "Pedregosa F, Varoquaux G, Gramfort A, et al. Scikit-learn: machine "
    "learning in Python. J Mach Learn Res 2011;12:2825-2830.",
    "paszke2019": "Paszke A, Gross S, Massa F, et al. PyTorch: an imperative style, "
    "high-performance deep learning library. NeurIPS 2019;32.",
    "friston1996": "Friston KJ, Williams S, Howard R, Frackowiak RS, Turner R. Movement-related "
    "effects in fMRI time-series. Magn Reson Med 1996;35:346-355.",
    "power2012": "Power JD, Barnes KA, Snyder AZ, Schlaggar BL, Petersen SE. Spurious but "
    "systematic correlations in functional connectivity MRI networks arise from subject "
    "motion. NeuroImage 2012;59:2142-2154.",
    "lindquist2019": "Lindquist MA, Geuter S, Wager TD, Caffo BS. Modular preprocessing "
    "pipelines can reintroduce artifacts into fMRI data. Hum Brain Mapp 2019;40:2358-2376.",
    "beckmann2004": "Beckmann CF, Smith SM. Probabilistic independent component analysis for "
    "functional magnetic resonance imaging. IEEE Trans Med Imaging 2004;23:137-152.",
    "smith2014": "Smith SM, Hyvärinen A, Varoquaux G, Miller KL, Beckmann CF. Group-PCA for very "
    "large fMRI datasets. NeuroImage 2014;101:738-749.",
    "minka2000": "Minka TP. Automatic choice of dimensionality for PCA. NIPS 2000;13.",
    "hyvarinen1999": "Hyvärinen A. Fast and robust fixed-point algorithms for independent "
    "component analysis. IEEE Trans Neural Netw 1999;10:626-634.",
    "himberg2004": "Himberg J, Hyvärinen A, Esposito F. Validating the independent components "
    "of neuroimaging time series via clustering and visualization. NeuroImage "
    "2004;22:1214-1222.",
    "seitzman2020": "Seitzman BA, Gratton C, Marek S, et al. A set of functionally-defined "
    "brain regions with improved representation of the subcortex and cerebellum. NeuroImage "
    "2020;206:116290.",
    "beckmann2009": "Beckmann CF, Mackay CE, Filippini N, Smith SM. Group comparison of "
    "resting-state FMRI data using multi-subject ICA and dual regression. NeuroImage "
    "2009;47:S148.",
    "nickerson2017": "Nickerson LD, Smith SM, Öngür D, Beckmann CF. Using dual regression to "
    "investigate network shape and amplitude in functional connectivity analyses. Front "
    "Neurosci 2017;11:115.",
    "winkler2014": "Winkler AM, Ridgway GR, Webster MA, Smith SM, Nichols TE. Permutation "
    "inference for the general linear model. NeuroImage 2014;92:381-397.",
    "smith2009": "Smith SM, Nichols TE. Threshold-free cluster enhancement: addressing problems "
    "of smoothing, threshold dependence and localisation in cluster inference. NeuroImage "
    "2009;44:83-98.",
    "varoquaux2017": "Varoquaux G, Raamana PR, Engemann DA, Hoyos-Idrobo A, Schwartz Y, "
    "Thirion B. Assessing and tuning brain decoders: cross-validation, caveats, and "
    "guidelines. NeuroImage 2017;145:166-179.",
    "ojala2010": "Ojala M, Garriga GC. Permutation tests for studying classifier performance. "
    "J Mach Learn Res 2010;11:1833-1863.",
    "kokhlikyan2020": "Kokhlikyan N, Miglani V, Martin M, et al. Captum: a unified and generic "
    "model interpretability library for PyTorch. arXiv:2009.07896, 2020.",
    "simonyan2014": "Simonyan K, Vedaldi A, Zisserman A. Deep inside convolutional networks: "
    "visualising image classification models and saliency maps. ICLR Workshop 2014.",
    "smilkov2017": "Smilkov D, Thorat N, Kim B, Viégas F, Wattenberg M. SmoothGrad: removing "
    "noise by adding noise. arXiv:1706.03825, 2017.",
    "sundararajan2017": "Sundararajan M, Taly A, Yan Q. Axiomatic attribution for deep "
    "networks. ICML 2017, PMLR 70:3319-3328.",
    "selvaraju2017": "Selvaraju RR, Cogswell M, Das A, Vedantam R, Parikh D, Batra D. Grad-CAM: "
    "visual explanations from deep networks via gradient-based localization. ICCV 2017:618-626.",
    "chattopadhay2018": "Chattopadhay A, Sarkar A, Howlader P, Balasubramanian VN. Grad-CAM++: "
    "generalized gradient-based visual explanations for deep convolutional networks. WACV "
    "2018:839-847.",
    "adebayo2018": "Adebayo J, Gilmer J, Muelly M, Goodfellow I, Hardt M, Kim B. Sanity checks "
    "for saliency maps. NeurIPS 2018;31.",
    "petsiuk2018": "Petsiuk V, Das A, Saenko K. RISE: randomized input sampling for explanation "
    "of black-box models. BMVC 2018.",
    "zhang2018": "Zhang J, Bargal SA, Lin Z, Brandt J, Shen X, Sclaroff S. Top-down neural "
    "attention by excitation backprop. Int J Comput Vis 2018;126:1084-1102.",
}

# The paper of each attribution method (by the names explain may use).
METHOD_REFERENCES = {
    "saliency": "simonyan2014",
    "smoothgrad": "smilkov2017",
    "integratedgradients": "sundararajan2017",
    "ig": "sundararajan2017",
    "gradcam": "selvaraju2017",
    "gradcampp": "chattopadhay2018",
    "gradcamplusplus": "chattopadhay2018",
}


class Citations:
    """Numbered citations in order of first use."""

    def __init__(self) -> None:
        self.keys: list[str] = []

    def __call__(self, *keys: str) -> str:
        """The citation mark of ``keys`` (keys of :data:`REFERENCES`), e.g. ``[2, 5]``."""
        numbers = []
        for key in keys:
            if key not in self.keys:
                self.keys.append(key)
            numbers.append(self.keys.index(key) + 1)
        return "[" + ", ".join(str(n) for n in sorted(numbers)) + "]"

    def html(self) -> str:
        """The numbered list of the works cited so far."""
        items = "".join(f"<li>{escape(REFERENCES[key])}</li>" for key in self.keys)
        return f'<h3>References</h3><ol class="refs">{items}</ol>'
