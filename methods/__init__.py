"""Built-in methods (installed as ``robustbench_ovss.methods``): activesam, segearth_ov3, sam3."""
