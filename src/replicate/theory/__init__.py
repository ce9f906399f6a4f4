"""The SGD noise scale (McCandlish et al. 2018): its closed forms, torch-free (sgd), its measurement on the
Video DiT with torch (noise), and the experiments of the book's chapter 4 (study: ``replicate theory``)."""
