// BitVert processing element: the datapath of the optimized PE (BBS.md §9.1, paper Fig. 7).
//
// One PE computes the dot product of W weights and W activations, one stored bit column
// of the weights per cycle. Per cycle and per sub-group of SG weights it
//   1. picks the activations at the effectual bits named by the scheduler (SG/2 lanes,
//      each an (SG/2+1):1 multiplexer in the windowed design),
//   2. adds them (the adder tree) and, when the scheduler inverted the column, takes
//      sum_sub - partial sum instead (the column is computed through its zeros);
// then it adds the sub-groups, negates the column when it is the two's-complement MSB
// column, shifts it by the column's significance and accumulates. In the same cycle the
// BBS multiplier adds one digit of the per-group constant times the activation sum: the
// constant is time-multiplexed, CDIGIT bits per cycle (3 in the paper), with a shift.
//
// The activations are loaded once per pass (load_acts) and stay in place while the
// columns stream through. acc holds the running sum; y takes the finished dot product
// on the pass's last cycle.
module bitvert_pe #(
    parameter int W = 16,
    parameter int SG = 8,
    parameter int WBITS = 8,
    parameter int ABITS = 8,
    parameter int ACCBITS = 24,
    parameter int CDIGIT = 3,
    parameter int WINDOWED = 1,
    localparam int NSUB = W / SG,
    localparam int LANES = SG / 2,
    localparam int WIN = WINDOWED != 0 ? LANES + 1 : SG,
    localparam int SELW = $clog2(WIN),
    localparam int SUMW = ABITS + $clog2(SG),        // sub-group activation sum
    localparam int PARTW = ABITS + $clog2(LANES),    // adder-tree sum of one sub-group
    localparam int SUBW = SUMW + 1,                  // sum_sub - partial
    localparam int COLW = SUBW + $clog2(NSUB) + 1,   // column sum, negated
    localparam int SHW = $clog2(WBITS),
    localparam int DIGW = CDIGIT + 1,                // signed constant digit
    localparam int ASUMW = ABITS + $clog2(W),        // activation sum of the pass
    localparam int DSHW = $clog2(6)
) (
    input  logic                   clk,
    input  logic                   load_acts,   // capture acts_in
    input  logic [W*ABITS-1:0]     acts_in,
    output logic [W*ABITS-1:0]     acts,        // held activations (feed the sum generator)
    input  logic [NSUB*SUMW-1:0]   sum_sub,     // from bv_sum_gen
    input  logic [NSUB-1:0]        invert,      // from the schedulers
    input  logic [NSUB*LANES*SELW-1:0] sel,
    input  logic [NSUB*LANES-1:0]  valid,
    input  logic                   step,        // a cycle of the pass
    input  logic                   first,       // first cycle: start from 0
    input  logic                   last,        // last cycle: y <= finished sum
    input  logic                   col_en,      // a stored column is processed this cycle
    input  logic                   col_msb,     // it is the MSB column: negate
    input  logic [SHW-1:0]         col_shift,   // its significance 2**col_shift
    input  logic signed [DIGW-1:0] digit,       // constant digit (0 when none)
    input  logic [DSHW-1:0]        digit_shift, // digit significance 2**digit_shift
    output logic signed [ACCBITS-1:0] y
);
    logic signed [ACCBITS-1:0] acc;
    logic signed [COLW-1:0] col_sum;
    logic signed [ASUMW-1:0] asum;

    always_ff @(posedge clk) begin
        if (load_acts) acts <= acts_in;
    end

    logic [NSUB*SUBW-1:0] sub_result;

    // Sums are functions so that no always block reads what it writes (event-driven
    // simulators such as Icarus would re-trigger it).
    function automatic logic [PARTW-1:0] adder_tree(input logic [LANES*ABITS-1:0] a);
        logic signed [PARTW-1:0] s;
        s = '0;
        for (int k = 0; k < LANES; k++) s = s + PARTW'($signed(a[k*ABITS +: ABITS]));
        adder_tree = s;
    endfunction

    function automatic logic [COLW-1:0] column_sum(input logic [NSUB*SUBW-1:0] r);
        logic signed [COLW-1:0] s;
        s = '0;
        for (int u = 0; u < NSUB; u++) s = s + COLW'($signed(r[u*SUBW +: SUBW]));
        column_sum = s;
    endfunction

    function automatic logic [ASUMW-1:0] activation_sum(input logic [NSUB*SUMW-1:0] r);
        logic signed [ASUMW-1:0] s;
        s = '0;
        for (int u = 0; u < NSUB; u++) s = s + ASUMW'($signed(r[u*SUMW +: SUMW]));
        activation_sum = s;
    endfunction

    for (genvar u = 0; u < NSUB; u++) begin : g_sub
        logic [LANES*ABITS-1:0] picked;  // lane k's activation, 0 when the lane is idle
        for (genvar k = 0; k < LANES; k++) begin : g_lane
            localparam int LO = WINDOWED != 0 ? LANES - 1 - k : 0;
            logic [SELW-1:0] s;
            assign s = sel[(u*LANES+k)*SELW +: SELW];
            // the lane's WIN:1 multiplexer over activations LO .. LO+WIN-1 of the sub-group
            assign picked[k*ABITS +: ABITS] = valid[u*LANES+k] ? acts[(u*SG+LO+32'(s))*ABITS +: ABITS] : '0;
        end
        logic signed [PARTW-1:0] partial;
        assign partial = adder_tree(picked);
        assign sub_result[u*SUBW +: SUBW] = invert[u]
            ? SUBW'($signed(sum_sub[u*SUMW +: SUMW])) - SUBW'(partial) : SUBW'(partial);
    end

    assign col_sum = column_sum(sub_result);
    assign asum = activation_sum(sum_sub);

    // the BBS multiplier: one constant digit times the pass's activation sum
    logic signed [ASUMW+DIGW-1:0] product;
    assign product = asum * digit;

    logic signed [ACCBITS-1:0] col_term, const_term, base, col_wide;
    assign col_wide = ACCBITS'(col_sum);
    assign col_term = col_en ? ((col_msb ? -col_wide : col_wide) <<< col_shift) : '0;
    assign const_term = ACCBITS'(product) <<< digit_shift;
    assign base = first ? '0 : acc;

    always_ff @(posedge clk) begin
        if (step) begin
            acc <= base + col_term + const_term;
            if (last) y <= base + col_term + const_term;
        end
    end
endmodule
