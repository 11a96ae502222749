"""Style transfer (Gatys, Ecker & Bethge 2016) and its controls: settings, targets and the
objective, the optimization loop, colour preservation, coarse-to-fine scales, photorealism
(Luan et al. 2017), semantic regions, guides and style blends."""
