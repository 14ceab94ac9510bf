// One Stripes PE with its row control: offer a pass (the WBITS columns of LANES weights,
// MSB column first, and LANES activations); y is the dot product after WBITS cycles.
// A new pass can be accepted on the last cycle of the previous one.
module stripes_unit #(
    parameter int LANES = 8,
    parameter int WBITS = 8,
    parameter int ABITS = 8,
    parameter int ACCBITS = 24,
    localparam int SHW = $clog2(WBITS)
) (
    input  logic                     clk,
    input  logic                     rst_n,
    input  logic                     start,
    input  logic [WBITS*LANES-1:0]   cols,     // column j at [j*LANES +: LANES], j = 0 the MSB column
    input  logic [LANES*ABITS-1:0]   acts_in,
    output logic                     ready,
    output logic                     done,
    output logic signed [ACCBITS-1:0] y
);
    logic busy, load, last, first;
    logic [SHW-1:0] cnt;
    logic [WBITS*LANES-1:0] colreg;

    assign last = busy && cnt == SHW'(WBITS - 1);
    assign first = busy && cnt == '0;
    assign ready = !busy || last;
    assign load = start && ready;

    always_ff @(posedge clk or negedge rst_n) begin
        if (!rst_n) begin
            busy <= 1'b0;
            done <= 1'b0;
            cnt <= '0;
            colreg <= '0;
        end else begin
            done <= last;
            if (load) begin
                busy <= 1'b1;
                cnt <= '0;
                colreg <= cols;
            end else if (busy) begin
                busy <= !last;
                cnt <= cnt + SHW'(1);
                colreg <= colreg >> LANES;
            end
        end
    end

    stripes_pe #(.LANES(LANES), .WBITS(WBITS), .ABITS(ABITS), .ACCBITS(ACCBITS)) u_pe (
        .clk, .load_acts(load), .acts_in, .column(colreg[LANES-1:0]), .step(busy), .first, .last,
        .col_msb(first), .col_shift(SHW'(WBITS - 1) - cnt), .y);
endmodule
