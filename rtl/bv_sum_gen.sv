// Activation-sum generator (BBS.md §4, §9.3): the sum of the activations of every
// sub-group. In the array one generator serves a whole PE column (all 32 weight rows
// meet the same activations), so it is not part of the PE's area.
module bv_sum_gen #(
    parameter int W = 16,
    parameter int SG = 8,
    parameter int ABITS = 8,
    localparam int NSUB = W / SG,
    localparam int SUMW = ABITS + $clog2(SG)
) (
    input  logic [W*ABITS-1:0]   acts,     // activation i at [i*ABITS +: ABITS], signed
    output logic [NSUB*SUMW-1:0] sum_sub   // sub-group u at [u*SUMW +: SUMW], signed
);
    function automatic logic [SUMW-1:0] add_signed(input logic [SG*ABITS-1:0] a);
        logic signed [SUMW-1:0] s;
        s = '0;
        for (int i = 0; i < SG; i++) s = s + SUMW'($signed(a[i*ABITS +: ABITS]));
        add_signed = s;
    endfunction

    for (genvar u = 0; u < NSUB; u++) begin : g_sub
        assign sum_sub[u*SUMW +: SUMW] = add_signed(acts[u*SG*ABITS +: SG*ABITS]);
    end
endmodule
